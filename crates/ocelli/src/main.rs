//! The `ocelli` binary: one program that is the server (`ocelli server`), the agent
//! (`ocelli agent`) and the command-line client (`ocelli query`, `agents`, `alarms`, ... in
//! [`cli`]). It parses flags, sets up logging and hands off to the library crates and the
//! client's modules.

use std::path::PathBuf;

use anyhow::Context;

mod cli;
mod local_agent;

/// mimalloc returns freed memory to the system more readily than glibc's per-thread arenas,
/// which keeps the server's resident memory close to what it actually holds (measured in the
/// storage benchmark).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ocelli", version, about = "Multi-cloud integrated monitoring")]
#[command(after_help = cli::EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the monitoring server on embedded storage.
    Server {
        /// Configuration file (TOML); see config/server.example.toml.
        #[arg(long, short = 'c', env = "OCELLI_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:9747].
        #[arg(long, env = "OCELLI_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Data directory [default: ./data].
        #[arg(long, env = "OCELLI_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Do not run the agent for this host inside the server (see `[local_agent]`).
        #[arg(long)]
        no_local_agent: bool,
        /// standalone, collector (consume RabbitMQ shard queues) or query (answer over
        /// --store servers) [default: standalone]; see docs/scale-out.md.
        #[arg(long, env = "OCELLI_ROLE")]
        role: Option<ocelli_server::cluster::Role>,
        /// collector: the broker, e.g. amqp://guest:guest@10.0.0.1:5672/%2f.
        #[arg(long, env = "OCELLI_AMQP")]
        amqp: Option<String>,
        /// collector: an etcd client URL, e.g. http://10.0.0.1:2379 (repeat for more); shards
        /// are then shared with the other collectors, and the agent registry lives there.
        #[arg(long = "etcd", env = "OCELLI_ETCD", value_delimiter = ',')]
        etcd: Vec<String>,
        /// For https:// etcd endpoints: the CA (PEM) their certificates chain to.
        #[arg(long, env = "OCELLI_ETCD_CA_FILE")]
        etcd_ca_file: Option<PathBuf>,
        /// collector: this collector's name among the others [default: {host name}-{port}].
        #[arg(long, env = "OCELLI_COLLECTOR_ID")]
        collector_id: Option<String>,
        /// query: a server to read from, e.g. http://10.0.0.2:9747 (repeat for more).
        #[arg(long = "store", env = "OCELLI_STORES", value_delimiter = ',')]
        stores: Vec<String>,
        /// query: the label telling HA replicas apart (deduplicated, dropped from answers).
        #[arg(long, env = "OCELLI_REPLICA_LABEL")]
        replica_label: Option<String>,
        /// Serve HTTPS with this certificate chain (PEM); with --tls-key ([tls] cert_file).
        #[arg(long, env = "OCELLI_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM) ([tls] key_file).
        #[arg(long, env = "OCELLI_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve HTTPS with a CA and certificate made in <data-dir>/tls ([tls] auto).
        #[arg(long, conflicts_with = "tls_cert")]
        tls_auto: bool,
        /// Every route but the health probes needs a token ([auth] enabled).
        #[arg(long)]
        auth: bool,
        /// Serve on a non-loopback address without TLS or auth anyway.
        #[arg(long)]
        insecure: bool,
    },
    /// Run the host agent: collectors with push, pull and on-demand outputs.
    Agent(ocelli_agent::cli::AgentCommand),
    #[command(flatten)]
    Client(cli::Command),
}

/// Hands the memory a large query or a storage maintenance step (head cut, compaction) freed
/// back to the system: `mi_collect(true)` on the thread that did it. mimalloc otherwise keeps
/// freed pages of a thread's heap until that thread allocates again, and a blocking-pool thread
/// that ran one big query, or the maintenance thread between cuts, may stay idle (measured:
/// 180 MB resident after one `count()` over 100k series; about 100 MB after ingesting 100k
/// series with three head cuts). Freeing at once everywhere (`purge_delay` 0) was measured too
/// and costs ingest a third more CPU, so only these threads trim.
#[allow(unsafe_code)]
fn trim_after_query() {
    // SAFETY: mi_collect takes no pointers; it only walks the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// After a write request, hands what the blocking-pool thread that stored it freed back to
/// the system: `mi_collect(true)`, at most every 250 ms per thread. A thread's freed pages
/// (request buffers, and head data a cut dropped on another thread) otherwise stay with it
/// while it is idle, which after a burst of writes is most of the time: 100k series ingested
/// left 240 MB resident, against 160 MB with this. Collecting after every request took the
/// same memory down to 145 MB but cost 40 % more CPU per sample; once per 250 ms costs
/// nothing measurable (docs/benchmarks.md).
#[allow(unsafe_code)]
fn trim_after_write() {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(250);
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> =
            const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    if LAST.get().is_some_and(|last| now.duration_since(last) < EVERY) {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: as in `trim_after_query`.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`), and the kernel then keeps 2 MiB pages resident of which the
/// allocator has freed all but a few KiB: after ingesting 100k series, 59 MB of the server's
/// memory was in huge pages and resident memory was 300 MB, against 235 MB with them off,
/// at the same CPU per sample (docs/benchmarks.md). The flag is per process and covers
/// mappings made before it was set.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // not fatal: only memory use is at stake (e.g. a kernel without THP, or seccomp)
        eprintln!("ocelli: could not turn transparent huge pages off: {e}");
    }
}

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    ocelli_server::query::set_after_large_query(trim_after_query);
    ocelli_server::http::set_after_write(trim_after_write);
    ocelli_tsdb::set_after_maintenance(trim_after_query);
    let cli = Cli::parse();
    if let Command::Client(c) = cli.command {
        std::process::exit(cli::run(c, Cli::command));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Server {
            config,
            listen,
            data_dir,
            no_local_agent,
            role,
            amqp,
            etcd,
            etcd_ca_file,
            collector_id,
            stores,
            replica_label,
            tls_cert,
            tls_key,
            tls_auto,
            auth,
            insecure,
        } => {
            let mut cfg = match &config {
                Some(p) => ocelli_server::Config::load(p)?,
                None => ocelli_server::Config::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if no_local_agent {
                cfg.local_agent.enabled = false;
            }
            if let (Some(c), Some(k)) = (tls_cert, tls_key) {
                cfg.tls.cert_file = Some(c);
                cfg.tls.key_file = Some(k);
                cfg.tls.auto = false;
            }
            if tls_auto {
                cfg.tls.auto = true;
                cfg.tls.cert_file = None;
                cfg.tls.key_file = None;
            }
            cfg.auth.enabled |= auth;
            cfg.insecure = insecure;
            if !etcd.is_empty() {
                // servers coordinated through etcd share their agent registry there too
                cfg.registry.etcd = etcd.clone();
            }
            if let Some(f) = etcd_ca_file {
                cfg.registry.etcd_ca_file = Some(f.clone());
                cfg.cluster.etcd_ca_file = Some(f);
            }
            let cl = &mut cfg.cluster;
            if let Some(r) = role {
                cl.role = r;
            }
            if let Some(a) = amqp {
                cl.amqp_url = a;
            }
            if !etcd.is_empty() {
                cl.etcd = etcd;
            }
            if let Some(id) = collector_id {
                cl.id = id;
            }
            if !stores.is_empty() {
                cl.stores = stores;
            }
            if let Some(r) = replica_label {
                cl.replica_label = r;
            }
            if cl.role != ocelli_server::cluster::Role::Standalone {
                // a collector or query node is not where a host agent belongs
                cfg.local_agent.enabled = false;
            }
            let local = local_agent::config(&cfg)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("ocelli-server")
                .build()
                .context("starting the async runtime")?;
            rt.block_on(local_agent::serve(cfg, local))?;
        }
        Command::Agent(cmd) => {
            use ocelli_agent::cli::AgentTask;
            let args = match cmd.into_task() {
                AgentTask::Run(args) => args,
                AgentTask::Install(a) => {
                    return Ok(ocelli_agent::install::install(&a, &mut std::io::stdout())?);
                }
                AgentTask::Uninstall(a) => {
                    return Ok(ocelli_agent::install::uninstall(&a, &mut std::io::stdout())?);
                }
                AgentTask::Service(verb) => return Ok(ocelli_agent::install::control(verb)?),
            };
            ocelli_agent::use_small_pages();
            let cfg = args.into_config()?;
            // one thread: the agent does little, and keeps its footprint small
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(2)
                .build()
                .context("starting the async runtime")?;
            rt.block_on(ocelli_agent::run(cfg, ocelli_agent::shutdown_signal()))?;
        }
        Command::Client(_) => {}
    }
    Ok(())
}
