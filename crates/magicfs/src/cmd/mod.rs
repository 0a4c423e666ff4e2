//! One module per subcommand.

mod assets;
mod bench;
mod bench_cluster;
mod bench_gen;
mod bench_relevance;
mod bench_scale;
mod bench_search;
mod chat;
mod compute;
mod docs;
mod endpoints;
mod exec;
mod format;
mod fsck;
mod gc;
mod generate;
mod generation;
mod mcp;
mod mount;
mod search;
mod serve;
mod service;
mod snapshot;
mod stats;
mod transfer;
mod volume;
mod xattr;

use crate::cli::{Cli, Command};
pub use chat::LlmArgs;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Command::Format(a) => format::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Fsck(a) => fsck::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchCluster(a) => bench_cluster::run(a),
        Command::Compute(a) => compute::run(a),
        Command::Export(a) => snapshot::export(a),
        Command::Import(a) => snapshot::import(a),
        Command::Serve(a) => serve::run(a),
        Command::Endpoints(a) => endpoints::run(a),
        Command::Assets(a) => assets::run(a),
        Command::Push(a) => transfer::push(a),
        Command::Pull(a) => transfer::pull(a),
        Command::Search(a) => search::search(a),
        Command::Index(a) => search::index(a),
        Command::BenchSearch(a) => bench_search::run(a),
        Command::Chat(a) => chat::repl(a),
        Command::BenchChat(a) => chat::bench(a),
        Command::BenchGen(a) => bench_gen::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Mcp(a) => mcp::run(a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    }
}
