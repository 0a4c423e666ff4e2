//! The `magicfs` command line.

mod cli;
mod cmd;
mod config;
mod exit;
mod logging;
mod progress;

fn main() {
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        // Help and version print and exit 0; usage errors exit 2.
        Err(config::ParseError::Clap(e)) => e.exit(),
        Err(config::ParseError::Usage(m)) => {
            eprintln!("magicfs: error: {m}");
            std::process::exit(exit::USAGE);
        }
    };
    logging::init();
    if let Err(e) = magicfs_net::tls::set_ca_file(cli.ca_file.as_deref()) {
        eprintln!("magicfs: error: {e}");
        std::process::exit(exit::USAGE);
    }
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            progress::suspend(|| eprintln!("magicfs: error: {e:#}"));
            exit::code_of(&e)
        }
    };
    std::process::exit(code);
}
