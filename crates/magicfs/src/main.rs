//! The `magicfs` command line.

mod cli;
mod cmd;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    env_logger::Builder::new()
        // The database driver's server notices ("already exists, skipping") are not news.
        .filter_module("tokio_postgres", log::LevelFilter::Warn)
        .parse_filters(&std::env::var("MAGICFS_LOG").unwrap_or_else(|_| "info".into()))
        .format_timestamp_millis()
        .init();
    let code = match cmd::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("magicfs: error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
