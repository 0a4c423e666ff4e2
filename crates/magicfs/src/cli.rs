//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Shown at the end of `--help` and in the man page.
const AFTER_HELP: &str = "\
Configuration:
  Every flag can also be set in a TOML file: --config FILE, else /etc/magicfs/config.toml
  and then $XDG_CONFIG_HOME/magicfs/config.toml (~/.config/magicfs/config.toml), with one
  table per subcommand ([mount], [serve], ...) holding flags by their long name, and an
  [env] table for environment variables. Flags win over environment variables, which win
  over configuration files, which win over the defaults.
Logs:
  RUST_LOG (or MAGICFS_LOG) filters the log lines on standard error (default: info);
  `mount --daemon` appends them to DATA/magicfs.log, see `magicfs mount --help`.
Exit status:
  0  success
  1  runtime error (store, mount, file, network or model)
  2  usage error (flag, value, -o option or configuration file)
  3  search found no match
  4  fsck found problems in the store
  exec exits with the program's own status.";

/// MagicFS: a filesystem whose files can chat, generate, search, compute and compress.
#[derive(Parser, Debug)]
#[command(name = "magicfs", version, about, after_help = AFTER_HELP, args_override_self = true)]
pub struct Cli {
    /// Read settings from this TOML file instead of /etc/magicfs/config.toml and
    /// $XDG_CONFIG_HOME/magicfs/config.toml.
    #[arg(long, global = true, value_name = "FILE", env = "MAGICFS_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Where a filesystem's data lives.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the store (created on first mount).
    #[arg(long, env = "MAGICFS_DATA", conflicts_with = "memory")]
    pub data: Option<PathBuf>,
    /// Keep everything in memory; nothing survives unmount.
    #[arg(long)]
    pub memory: bool,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount a filesystem (foreground until Ctrl-C, SIGTERM or unmount).
    Mount(MountArgs),
    /// Print counters: sizes, compression and deduplication ratios.
    Stats(StatsArgs),
    /// Check every invariant of a store; exits 4 if something is wrong.
    Fsck(FsckArgs),
    /// Reclaim the space of deleted data by compacting pack files (store must not be mounted).
    Gc(GcArgs),
    /// Run a program stored in MagicFS (fexecve of a sealed memfd; no temporary file).
    Exec(ExecArgs),
    /// Measure throughput of filesystem workloads in several directories side by side.
    Bench(BenchArgs),
    /// Count, XOR, sum, FNV-1a or CRC-32C byte windows of a file, in place and on all cores.
    Compute(ComputeArgs),
    /// Write a whole tree (store, mount point or directory) as one JSON document.
    Export(ExportArgs),
    /// Recreate a tree from a `magicfs export` document (all or nothing).
    Import(ImportArgs),
    /// Serve near-data compute and ranged file reads over HTTP for files under root directories.
    Serve(ServeArgs),
    /// Manage the registry of `magicfs serve` endpoints that `compute --on` spreads jobs over.
    Endpoints(EndpointsArgs),
    /// Catalogue remote data sources (allowlisted hosts only).
    Assets(AssetsArgs),
    /// Send a file to a `magicfs serve` peer as a recipe; only the chunks it lacks travel.
    Push(PushArgs),
    /// Fetch a file from a `magicfs serve` peer as a recipe; only the chunks missing here travel.
    Pull(PullArgs),
    /// Search files by meaning (through a mount, or an unmounted store's index); exits 3 when nothing matches.
    Search(SearchArgs),
    /// Progress of the search index of a mount.
    Index(IndexArgs),
    /// Measure search: query latency, cached listings, embedding throughput against
    /// sentence-transformers, and `stat` latency under search load.
    BenchSearch(BenchSearchArgs),
    /// Talk to a chat session of a mounted filesystem (sessions/ID), streaming the replies.
    Chat(ChatArgs),
    /// Benchmark chat sessions against llama.cpp driven directly (needs a mount).
    BenchChat(BenchChatArgs),
    /// Create a tree of files from one sentence on a mount (filled on first read), or regenerate a file.
    Generate(GenerateArgs),
    /// Serve a mount or an unmounted store to AI agents over the Model Context Protocol (stdio or HTTP).
    Mcp(McpArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per subcommand into a directory.
    Man(ManArgs),
}

/// What an agent-facing server (`magicfs mcp`) may do.
#[derive(Args, Debug, Clone)]
pub struct VolumeLimitArgs {
    /// Refuse every change: no writes, moves, deletes, chat turns or generation.
    #[arg(long)]
    pub read_only: bool,
    /// Most bytes one read returns (longer reads are cut and say so).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = magicfs_compute::parse_size)]
    pub max_read: u64,
    /// Most bytes one write or upload carries.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = magicfs_compute::parse_size)]
    pub max_write: u64,
}

/// `magicfs mcp`.
#[derive(Args, Debug)]
pub struct McpArgs {
    /// A mounted MagicFS (or any directory: files and compute only).
    #[arg(required_unless_present = "data", conflicts_with = "data")]
    pub mountpoint: Option<PathBuf>,
    /// Data directory of an unmounted store: served in process, with its own
    /// search index, chat sessions and generation.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Serve streamable HTTP on ADDR (such as 127.0.0.1:8812) at /mcp instead of stdio;
    /// every request needs the bearer token.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Bearer token required over HTTP (the same as `magicfs serve` takes).
    #[arg(long, env = "MAGICFS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub limits: VolumeLimitArgs,
    /// With --data: search settings of the store's index.
    #[command(flatten)]
    pub search: SearchOpts,
    /// With --data: the language model answering chat and generation.
    #[command(flatten)]
    pub llm: crate::cmd::LlmArgs,
    #[command(flatten)]
    pub gen: GenMountArgs,
}

/// `magicfs completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `magicfs man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write magicfs.1 and magicfs-SUBCOMMAND.1 pages into DIR instead of printing magicfs.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Search settings of a mount.
#[derive(Args, Debug, Clone)]
pub struct SearchOpts {
    /// Host directory to index and watch for search (repeatable).
    #[arg(long = "watch", value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    /// Directory holding the models (minilm/); see scripts/models.sh.
    #[arg(long, env = "MAGICFS_MODELS", value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Results listed per query in search/<query>/.
    #[arg(long, default_value_t = magicfs_index::DEFAULT_TOP_K)]
    pub search_top_k: usize,
    /// Lowest score (cosine similarity, -1 to 1) listed.
    #[arg(long, default_value_t = magicfs_index::DEFAULT_MIN_SCORE, allow_hyphen_values = true)]
    pub search_min_score: f32,
    /// No search/ directory and no indexing.
    #[arg(long)]
    pub no_search: bool,
}

/// `magicfs search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// What to look for.
    pub query: String,
    /// A mounted MagicFS (default when --data is not given: the current directory's mount).
    #[arg(long, conflicts_with = "data")]
    pub mount: Option<PathBuf>,
    /// Data directory of an unmounted store: search its saved index.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory holding the models (with --data).
    #[arg(long, env = "MAGICFS_MODELS", value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Results to print (with --data; a mount lists its own top-k).
    #[arg(short = 'k', long, default_value_t = magicfs_index::DEFAULT_TOP_K)]
    pub top_k: usize,
    /// Lowest score printed (with --data).
    #[arg(long, default_value_t = magicfs_index::DEFAULT_MIN_SCORE, allow_hyphen_values = true)]
    pub min_score: f32,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `magicfs index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    /// What to show.
    #[command(subcommand)]
    pub cmd: IndexCmd,
}

/// `magicfs index` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndexCmd {
    /// Files and passages indexed, queued work, model state.
    Status {
        /// A mounted MagicFS.
        mountpoint: PathBuf,
        /// Show a progress bar until the queue is empty.
        #[arg(long)]
        wait: bool,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `magicfs bench-search`.
#[derive(Args, Debug)]
pub struct BenchSearchArgs {
    /// Passages embedded for the throughput comparison.
    #[arg(long, default_value_t = 192)]
    pub passages: usize,
    /// Index sizes (passages) at which query latency is measured.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub sizes: Vec<usize>,
    /// Uncached queries per size.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Python with sentence-transformers (default: ~/.cache/magicfs/st-venv/bin/python; scripts/st-venv.sh makes it).
    #[arg(long)]
    pub st_python: Option<PathBuf>,
    /// Skip the sentence-transformers comparison.
    #[arg(long)]
    pub no_st: bool,
    /// Directory holding the models.
    #[arg(long, env = "MAGICFS_MODELS", value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Seconds of `stat` sampling under search load.
    #[arg(long, default_value_t = 5)]
    pub load_seconds: u64,
}

/// `magicfs mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Directory to mount on.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Codec for new chunks: zstd, gzip or none (per file: xattr user.magic.codec).
    #[arg(long, default_value = "zstd", env = "MAGICFS_CODEC")]
    pub codec: String,
    /// Detach and run in the background once mounted (log: see --log).
    #[arg(long)]
    pub daemon: bool,
    /// Stay in the foreground even where the configuration says `daemon = true`
    /// (as under systemd, which is told with sd_notify when the mount is up).
    #[arg(long, overrides_with = "daemon")]
    pub foreground: bool,
    /// Allow other users (and root) to use the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Threads reading FUSE requests.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Do not use FUSE over io_uring even where the kernel offers it
    /// (fuse module parameter `enable_uring=Y`, Linux 6.14+).
    #[arg(long, env = "MAGICFS_NO_IO_URING")]
    pub no_io_uring: bool,
    /// Mount options as in fstab: every flag of this command as NAME or NAME=VALUE
    /// (`-o allow_other,data=/srv/m,model-path=/m.gguf,watch=/srv/docs,watch=/srv/wiki`),
    /// `config=FILE`, and the kernel's mount flags.
    #[arg(short = 'o', value_delimiter = ',')]
    pub options: Vec<String>,
    /// Append the log to FILE (with --daemon by default DATA/magicfs.log, or
    /// $XDG_STATE_HOME/magicfs/magicfs.log for --memory; else standard error).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub search: SearchOpts,
    #[command(flatten)]
    pub llm: crate::cmd::LlmArgs,
    #[command(flatten)]
    pub gen: GenMountArgs,
}

/// Generated-content settings of `magicfs mount`.
#[derive(Args, Debug, Clone)]
pub struct GenMountArgs {
    /// An external generator, NAME=PROGRAM (repeatable): files choose it with
    /// `user.magic.generator=NAME`; it reads a JSON request on stdin and prints the content.
    #[arg(long = "plugin", value_name = "NAME=PROGRAM")]
    pub plugins: Vec<String>,
    /// Time limit of one plugin run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, env = "MAGICFS_PLUGIN_TIMEOUT")]
    pub plugin_timeout: f64,
    /// Token limit of one file written by the language model.
    #[arg(long, value_name = "N", default_value_t = 384, env = "MAGICFS_GEN_MAX_TOKENS")]
    pub gen_max_tokens: u32,
}

/// `magicfs generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What the tree is about, e.g. "a CLI todo app in Python".
    #[arg(required_unless_present_any = ["again", "schema"])]
    pub prompt: Option<String>,
    /// Directory on a MagicFS mount to create the tree in (created when missing).
    #[arg(required_unless_present_any = ["again", "schema"])]
    pub dir: Option<PathBuf>,
    /// Regenerate the content of this file on a mount (replaces it, updates provenance).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["prompt", "dir", "eager", "schema"])]
    pub again: Option<PathBuf>,
    /// Fill every file now, showing progress, instead of on first read.
    #[arg(long)]
    pub eager: bool,
    /// Print the JSON schema the model's tree answer is constrained to, and exit.
    #[arg(long, conflicts_with_all = ["prompt", "dir", "eager"])]
    pub schema: bool,
}

/// `magicfs stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A mounted MagicFS (reads MOUNT/.magic/status).
    pub mountpoint: Option<PathBuf>,
    /// Data directory of an unmounted store.
    #[arg(long, conflicts_with = "mountpoint")]
    pub data: Option<PathBuf>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// `magicfs fsck`.
#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Data directory of the store (must not be mounted).
    #[arg(long, env = "MAGICFS_DATA")]
    pub data: PathBuf,
    /// Skip reading and hashing every chunk.
    #[arg(long)]
    pub no_data: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `magicfs gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Data directory of the store (must not be mounted).
    #[arg(long, env = "MAGICFS_DATA")]
    pub data: PathBuf,
    /// Compact packs at least this fraction unreferenced (0.0-1.0).
    #[arg(long, default_value_t = 0.25)]
    pub min_garbage: f64,
}

/// `magicfs exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Data directory of an unmounted store; PATH is then a path inside it.
    /// Without it, PATH is a host path (e.g. a file on a MagicFS mount).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The program.
    pub path: String,
    /// Its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `magicfs bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Directories to measure, as NAME=PATH (e.g. tmpfs=/mnt/t magicfs=/mnt/m).
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Size of the sequential file in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Number of small files for create+stat+unlink.
    #[arg(long, default_value_t = 10000)]
    pub files: u64,
    /// Random 4 KiB reads.
    #[arg(long, default_value_t = 20000)]
    pub random_reads: u64,
    /// A tar archive to extract in each target.
    #[arg(long)]
    pub tarball: Option<PathBuf>,
    /// Repetitions; the best run is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Targets the others are compared with (by name; default: the first).
    #[arg(long)]
    pub baseline: Vec<String>,
    /// Drop the kernel page cache before read phases (needs root).
    #[arg(long)]
    pub drop_caches: bool,
}

/// `magicfs compute`.
#[derive(Args, Debug)]
pub struct ComputeArgs {
    /// The file to read (memory-mapped, read-only), a file:// URL, or an http:// URL read with
    /// range requests; with --on, the data URL as the endpoints see it.
    pub path: PathBuf,
    /// Spread the job over registered endpoints: `all` or NAME,NAME (see `magicfs endpoints`).
    #[arg(long, value_name = "all|NAME,…")]
    pub on: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// With --on: most window bytes per request to an endpoint.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = magicfs_compute::parse_size)]
    pub batch: u64,
    /// Operation: counteq, xor, add, fnv or crc32c.
    #[arg(long, required_unless_present = "instructions")]
    pub op: Option<magicfs_compute::Op>,
    /// Byte value counted by counteq (0-255).
    #[arg(long)]
    pub imm: Option<u8>,
    /// First byte of the range (a size such as 4096, 64KiB or 1MiB; default 0).
    #[arg(long, value_parser = magicfs_compute::parse_size)]
    pub offset: Option<u64>,
    /// Bytes to read (default: to the end of the file).
    #[arg(long, value_parser = magicfs_compute::parse_size)]
    pub length: Option<u64>,
    /// Cut the range into windows of SIZE and print one result per window (default: one window).
    #[arg(long, value_name = "SIZE", value_parser = magicfs_compute::parse_size)]
    pub window: Option<u64>,
    /// Run the JSON instruction program in FILE instead of one op.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["op", "imm", "offset", "length", "window"])]
    pub instructions: Option<PathBuf>,
    /// Print the results as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `magicfs export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A store's data directory (unmounted), a MagicFS mount point, or any directory.
    pub source: PathBuf,
    /// Write the document to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `magicfs import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The document to read (`-` for standard input).
    pub input: PathBuf,
    /// An empty store's data directory, an empty mount point, or an empty or new directory.
    pub dest: PathBuf,
    /// Create a new store at DEST instead of a plain directory.
    #[arg(long)]
    pub new_store: bool,
}

/// `magicfs serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8811")]
    pub listen: std::net::SocketAddr,
    /// Directory whose files may be read (repeatable; GET /files/ serves the first).
    #[arg(long = "root", value_name = "DIR", required = true)]
    pub roots: Vec<PathBuf>,
    /// Bearer token required on every route but /health.
    #[arg(long, env = "MAGICFS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest request body accepted (a size such as 1MiB).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = magicfs_compute::parse_size)]
    pub max_body: u64,
    /// Also allow http:// data sources on HOST (address, CIDR, name, *.domain or *; repeatable;
    /// `none` turns them off). Loopback is allowed otherwise.
    #[arg(long = "allow-host", value_name = "HOST", env = "MAGICFS_ALLOW_HOSTS", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,
    /// Most concurrent range requests to one origin.
    #[arg(long, default_value_t = magicfs_remote::fetch::DEFAULT_STREAMS)]
    pub streams: usize,
    /// Also serve the web console at /console/ over the first root (a MagicFS
    /// mount gets search, chat and generation too); without --token one is made up and printed.
    #[arg(long)]
    pub console: bool,
    /// What the console may do (with --console).
    #[command(flatten)]
    pub console_limits: VolumeLimitArgs,
}

/// How remote sources are reached.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Also allow remote reads from HOST (an address, a CIDR block, a name, *.domain or *;
    /// repeatable; `none` turns remote reads off). Loopback is always allowed otherwise.
    #[arg(long = "allow-host", value_name = "HOST", env = "MAGICFS_ALLOW_HOSTS", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,
    /// Most concurrent range requests to one origin.
    #[arg(long, default_value_t = magicfs_remote::fetch::DEFAULT_STREAMS, env = "MAGICFS_STREAMS")]
    pub streams: usize,
    /// Bearer token sent to an http:// source.
    #[arg(long, env = "MAGICFS_SOURCE_TOKEN", hide_env_values = true)]
    pub source_token: Option<String>,
}

/// Where the endpoint registry lives.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Data directory of a store: the registry is DATA/endpoints.json.
    #[arg(long = "data", value_name = "DIR")]
    pub registry_data: Option<PathBuf>,
    /// The registry file (default: $XDG_CONFIG_HOME/magicfs/endpoints.json or ~/.config/magicfs/endpoints.json).
    #[arg(long, value_name = "FILE", env = "MAGICFS_ENDPOINTS", conflicts_with = "registry_data")]
    pub endpoints: Option<PathBuf>,
}

/// `magicfs endpoints`.
#[derive(Args, Debug)]
pub struct EndpointsArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// What to do.
    #[command(subcommand)]
    pub cmd: EndpointsCmd,
}

/// `magicfs endpoints` subcommands.
#[derive(Subcommand, Debug)]
pub enum EndpointsCmd {
    /// Register (or update) an endpoint: a `magicfs serve` base URL.
    Add {
        /// Name used by `compute --on`.
        name: String,
        /// Base URL, such as http://10.0.0.5:8811.
        url: String,
        /// Requests sent to it at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Bearer token it requires.
        #[arg(long)]
        token: Option<String>,
        /// Most compute requests per day (UTC).
        #[arg(long, value_name = "N")]
        budget_requests: Option<u64>,
        /// Most window bytes per day (UTC), a size such as 10GiB.
        #[arg(long, value_name = "SIZE", value_parser = magicfs_compute::parse_size)]
        budget_bytes: Option<u64>,
    },
    /// List the endpoints with their probes, budgets and today's usage.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an endpoint.
    Rm {
        /// Its name.
        name: String,
    },
    /// Measure latency (GET /health) and throughput (GET /probe, or a counteq over --data-url).
    Probe {
        /// Endpoints to probe (default: all).
        names: Vec<String>,
        /// Measure compute throughput over this data URL (as the endpoints see it) instead.
        #[arg(long, value_name = "URL")]
        data_url: Option<String>,
    },
}

/// `magicfs assets`.
#[derive(Args, Debug)]
pub struct AssetsArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: AssetsCmd,
}

/// `magicfs assets` subcommands.
#[derive(Subcommand, Debug)]
pub enum AssetsCmd {
    /// Print one JSON line per URL: byte ranges, size, ETag, cache headers, 64 KiB compute-rate estimate.
    Probe {
        /// http:// URLs of data sources.
        #[arg(required = true)]
        urls: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// `magicfs push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The file to send.
    pub path: PathBuf,
    /// The peer: http://HOST:PORT/[DIR/][NAME] (relative to its first root; a trailing / keeps the file's name).
    pub peer: String,
    /// Bearer token of the peer.
    #[arg(long, env = "MAGICFS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `magicfs pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// The peer: http://HOST:PORT.
    pub peer: String,
    /// The file on the peer, relative to its first root.
    pub remote_path: String,
    /// Where to write it here (its current content, if any, supplies chunks).
    pub local_path: PathBuf,
    /// Bearer token of the peer.
    #[arg(long, env = "MAGICFS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `magicfs chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Session id: the file sessions/ID.
    pub id: String,
    /// Mount point [default: ~/magicfs].
    #[arg(long, env = "MAGICFS_MOUNT")]
    pub mount: Option<PathBuf>,
    /// Start a new conversation (empties the session first).
    #[arg(long)]
    pub new: bool,
    /// System prompt for a new or empty session.
    #[arg(long)]
    pub system: Option<String>,
    /// Send these messages (repeatable) and print the replies instead of reading standard input.
    #[arg(short, long)]
    pub message: Vec<String>,
    /// Longest wait for one reply, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// `magicfs bench-chat`.
#[derive(Args, Debug)]
pub struct BenchChatArgs {
    /// A MagicFS mount with chat sessions (the in-process model).
    pub mount: PathBuf,
    /// Tokens to generate in the first turn.
    #[arg(long, default_value_t = 128)]
    pub tokens: u32,
    /// The model settings the mount was started with (threads, context, model path).
    #[command(flatten)]
    pub llm: crate::cmd::LlmArgs,
}
