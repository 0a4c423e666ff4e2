//! One progress style for every long job of the command line (model load,
//! index scan, export and import, push and pull, gc, fsck, generate):
//! indicatif bars on standard error, drawn only when standard error is a
//! terminal, so logs, pipes and CI output stay quiet. Log lines written
//! while a bar is shown go above it (see [`suspend`]).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::LazyLock;
use std::time::Duration;

static BARS: LazyLock<MultiProgress> = LazyLock::new(|| {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    MultiProgress::with_draw_target(target)
});

fn add(bar: ProgressBar, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        .tick_chars("|/-\\ ");
    let bar = BARS.add(bar.with_style(style));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over `total` bytes: `what [=====>    ] 12.0 MiB/40.0 MiB 30 MiB/s 1s`.
pub fn bytes(what: impl Into<String>, total: u64) -> ProgressBar {
    add(
        ProgressBar::new(total).with_message(what.into()),
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
    )
}

/// A bar over `total` things: `what [=====>    ] 120/400 chunks 2s`.
pub fn count(what: impl Into<String>, total: u64, unit: &str) -> ProgressBar {
    let template = format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{eta}}");
    add(ProgressBar::new(total).with_message(what.into()), &template)
}

/// A bar over a fraction in percent, for work that reports 0 to 1.
pub fn percent(what: impl Into<String>) -> ProgressBar {
    add(ProgressBar::new(100).with_message(what.into()), "{msg} [{bar:30}] {pos}% {elapsed}")
}

/// A spinner for work of unknown size: `| what 3s`.
pub fn spinner(what: impl Into<String>) -> ProgressBar {
    add(ProgressBar::no_length().with_message(what.into()), "{spinner} {msg} {elapsed}")
}

/// A spinner counting bytes of unknown total: `| what 12.0 MiB 30 MiB/s`.
pub fn bytes_spinner(what: impl Into<String>) -> ProgressBar {
    add(ProgressBar::no_length().with_message(what.into()), "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}")
}

/// Runs `f` with the bars cleared, so what it prints is not drawn over.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    BARS.suspend(f)
}

/// Wraps a reader so that every byte read advances `bar`.
pub struct Reading<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> Reading<R> {
    /// `inner`, counted on `bar`.
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        Reading { inner, bar }
    }
}

impl<R: std::io::Read> std::io::Read for Reading<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Wraps a writer so that every byte written advances `bar`.
pub struct Writing<W> {
    inner: W,
    bar: ProgressBar,
}

impl<W> Writing<W> {
    /// `inner`, counted on `bar`.
    pub fn new(inner: W, bar: ProgressBar) -> Self {
        Writing { inner, bar }
    }
}

impl<W: std::io::Write> std::io::Write for Writing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
