//! One module per subcommand.

mod bench;
mod chat;
mod compute;
mod exec;
mod fsck;
mod gc;
mod generate;
mod generation;
mod mount;
mod serve;
mod snapshot;
mod stats;

use crate::cli::{Cli, Command};
pub use chat::LlmArgs;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Command::Mount(a) => mount::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Fsck(a) => fsck::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Compute(a) => compute::run(a),
        Command::Export(a) => snapshot::export(a),
        Command::Import(a) => snapshot::import(a),
        Command::Serve(a) => serve::run(a),
        Command::Chat(a) => chat::repl(a),
        Command::BenchChat(a) => chat::bench(a),
        Command::Generate(a) => generate::run(a),
    }
}
