//! Logs: `tracing` events, and the `log` macros of the library crates
//! bridged into them, on standard error with a timestamp and level. The
//! filter is `RUST_LOG` (`MAGICFS_LOG` is its old name), `info` by default.
//! A background mount's standard error is its log file, opened for
//! appending (see `magicfs mount --log`). Lines go above progress bars.

use std::io::{IsTerminal, Write};
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is not set.
/// The database driver's server notices ("already exists, skipping") are
/// not news.
pub const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

/// One log line, written to standard error in one piece when done.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        crate::progress::suspend(|| {
            let _ = std::io::stderr().lock().write_all(&bytes);
        });
    }
}

/// Installs the one subscriber of the process (call once, early in `main`).
/// `RUST_LOG` has already absorbed `MAGICFS_LOG` (see `config`).
pub fn init() {
    let spec = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty());
    let filter = match spec.as_deref().map(EnvFilter::try_new) {
        None => EnvFilter::new(DEFAULT_FILTER),
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!("magicfs: RUST_LOG={:?} is not a valid filter ({e}); logging at info", spec.unwrap_or_default());
            EnvFilter::new(DEFAULT_FILTER)
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| Line(Vec::with_capacity(256)))
        .try_init();
}
