//! The `magicfs` command line.

mod cli;
mod cmd;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("MAGICFS_LOG", "info"))
        .format_timestamp_millis()
        .init();
    if let Err(e) = magicfs_net::tls::set_ca_file(args.ca_file.as_deref()) {
        eprintln!("magicfs: error: {e}");
        std::process::exit(2);
    }
    let code = match cmd::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("magicfs: error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
