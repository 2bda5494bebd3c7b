//! A running agent: [`Agent::start`] checks the configuration, binds the listen address and
//! starts three tasks on the caller's tokio runtime (any flavour; the binary uses a
//! current-thread one):
//! - the HTTP endpoints ([`crate::http`]), in every mode;
//! - the collection loop: every interval, in push mode, collect everything and push it
//!   ([`crate::push`]); in the other modes, send what the push buffer still holds, so a switch
//!   away from push leaves no gap;
//! - with a server, the heartbeat loop ([`crate::heartbeat`]), which switches the mode and
//!   interval when the server's answer asks for other ones.
//!
//! The mode and interval live in one `watch` channel: the heartbeat writes it, the collection
//! loop restarts its timer when it changes, and [`Agent::running`] reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::buffer::Buffer;
use crate::client::{Client, ServerUrl};
use crate::collector::{Collectors, Family, Kind, Sink};
use crate::config::{AgentConfig, Identity, Mode, Paths};
use crate::heartbeat::{Beat, RunConfig};
use crate::push::{JOB, Output, PushStats, Pusher};
use crate::{Error, Result};

/// What the tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub collectors: Mutex<Collectors>,
    pub identity: Identity,
    /// The advertised `host:port`.
    pub address: String,
    pub paths: Paths,
    pub process_window: Duration,
    pub push: Arc<PushStats>,
    pub heartbeat_failures: AtomicU64,
    pub run: watch::Sender<RunConfig>,
}

impl Shared {
    /// Runs every collector (on the blocking pool) and adds the agent's own figures.
    pub async fn collect_all(self: &Arc<Self>) -> Result<Vec<Family>> {
        let me = self.clone();
        let mut sink = tokio::task::spawn_blocking(move || {
            let mut sink = Sink::default();
            me.collectors
                .lock()
                .map_err(|_| Error::Internal("collectors lock poisoned".into()))?
                .collect_all(&mut sink);
            Ok::<_, Error>(sink)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        self.own_metrics(&mut sink);
        Ok(sink.into_sorted())
    }

    fn own_metrics(&self, sink: &mut Sink) {
        let p = &self.push;
        let (c, g) = (Kind::Counter, Kind::Gauge);
        let figures: [(&str, &str, Kind, &AtomicU64); 7] = [
            ("ocelli_agent_pushed_batches_total", "Push batches the server took.", c, &p.sent),
            (
                "ocelli_agent_rejected_batches_total",
                "Push batches the server refused with a 4xx answer; dropped, not retried.",
                c,
                &p.rejected,
            ),
            (
                "ocelli_agent_push_failures_total",
                "Push attempts that got no answer or a 5xx answer.",
                c,
                &p.failures,
            ),
            (
                "ocelli_agent_buffer_batches",
                "Push batches waiting in the disk buffer.",
                g,
                &p.buffered_batches,
            ),
            (
                "ocelli_agent_buffer_bytes",
                "Bytes of push batches in the disk buffer.",
                g,
                &p.buffered_bytes,
            ),
            (
                "ocelli_agent_buffer_dropped_batches_total",
                "Buffered push batches dropped because the buffer was full or the file was damaged.",
                c,
                &p.dropped,
            ),
            (
                "ocelli_agent_heartbeat_failures_total",
                "Heartbeats that failed (no answer, or an error answer).",
                c,
                &self.heartbeat_failures,
            ),
        ];
        for (name, help, kind, v) in figures {
            sink.single(name, help, kind, v.load(Ordering::Relaxed) as f64);
        }
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// The bound listen address.
    pub addr: SocketAddr,
    /// The advertised `host:port` (the `instance` label and the heartbeat's `address`).
    pub address: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Agent {
    /// Checks `cfg`, opens the push buffer (with a server), binds the listen address and starts
    /// serving, collecting and heartbeating in the background.
    pub async fn start(mut cfg: AgentConfig) -> Result<Agent> {
        cfg.validate()?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| Error::Listen { addr: cfg.listen.to_string(), source })?;
        let addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
        let address = cfg.advertise.clone().unwrap_or_else(|| addr.to_string());
        if cfg.advertise.is_none() && addr.ip().is_unspecified() && cfg.server.is_some() {
            tracing::warn!(%address, "listening on all interfaces without --advertise: the server is told an address it cannot reach");
        }
        let stats = Arc::new(PushStats::default());
        let timeout = Duration::from_secs(cfg.request_timeout_seconds.into());
        let server = match &cfg.server {
            Some(s) => Some(ServerUrl::parse(s)?),
            None => None,
        };
        let trust = cfg.tls.trust()?;
        let token = crate::credential::resolve(&cfg, server.as_ref(), &trust, timeout).await?;
        // every client of the server: https with the configured trust, and the credential
        let client = |url: ServerUrl| -> Result<Client> {
            let c = Client::new(url.clone(), timeout).with_token(token.as_deref());
            if url.tls { c.with_trust(&trust) } else { Ok(c) }
        };
        let out = match (&cfg.amqp, &server) {
            (Some(a), _) => Some(Output::Amqp(crate::amqp::Publisher::new(
                a.clone(),
                cfg.identity.key(),
                timeout,
            ))),
            (None, Some(url)) => Some(Output::Http(client(url.clone())?)),
            (None, None) => None,
        };
        let pusher = match out {
            Some(out) => {
                let dir = cfg.data_dir.join(crate::filenames::BUFFER_DIR);
                let buffer = Buffer::open(&dir, cfg.buffer.max_bytes)?;
                Some(Pusher::new(out, buffer, stats.clone()))
            }
            None => None,
        };
        let run = RunConfig { mode: cfg.mode, interval_seconds: cfg.interval_seconds };
        let shared = Arc::new(Shared {
            collectors: Mutex::new(Collectors::new(cfg.paths.clone(), cfg.collectors.clone())),
            identity: cfg.identity.clone(),
            address: address.clone(),
            paths: cfg.paths.clone(),
            process_window: Duration::from_millis(cfg.collectors.processes_cpu_window_ms.into()),
            push: stats,
            heartbeat_failures: AtomicU64::new(0),
            run: watch::Sender::new(run),
        });
        let (shutdown, rx) = watch::channel(false);
        let mut stop = rx.clone();
        let app = crate::http::router(shared.clone());
        let tls = match cfg.tls.server_files()? {
            Some(files) => Some(ocelli_tls::ServerTls::load(&files).map_err(Error::Config)?),
            None => None,
        };
        let http = tokio::spawn(async move {
            let stop = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            match tls {
                Some(t) => match ocelli_tls::TlsListener::new(listener, t) {
                    Ok(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
                    Err(e) => Err(e),
                },
                None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
            }
            .map_err(|e| Error::Internal(format!("serving HTTP: {e}")))
        });
        let collect = tokio::spawn(collect_loop(shared.clone(), pusher, rx.clone()));
        let beat = match server {
            Some(url) => Some(tokio::spawn(heartbeat_loop(shared.clone(), client(url)?, rx))),
            None => None,
        };
        tracing::info!(%addr, %address, mode = %run.mode, interval_seconds = run.interval_seconds,
            server = cfg.server.as_deref().unwrap_or("none"),
            amqp = cfg.amqp.as_ref().map(|a| a.exchange.as_str()).unwrap_or("none"),
            key = %cfg.identity.key(), "agent running");
        let task = tokio::spawn(async move {
            let served = http.await.map_err(|e| Error::Internal(e.to_string()))?;
            let _ = collect.await;
            if let Some(b) = beat {
                let _ = b.await;
            }
            served
        });
        Ok(Agent { addr, address, shared, shutdown, task })
    }

    /// The mode and interval the agent runs now (the server may have changed them).
    pub fn running(&self) -> RunConfig {
        *self.shared.run.borrow()
    }

    /// The push output's counters (batches sent, refused, failed, buffered).
    pub fn push_stats(&self) -> Arc<PushStats> {
        self.shared.push.clone()
    }

    /// Stops serving, collecting and heartbeating; a push in flight finishes first.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// Runs an agent until `shutdown` completes.
pub async fn run(cfg: AgentConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let agent = Agent::start(cfg).await?;
    shutdown.await;
    tracing::info!("agent shutting down");
    agent.stop().await
}

/// For an agent that is a process of its own, called first thing: makes sure the process runs
/// without transparent huge pages. The allocator asks for huge pages on its arenas, and where
/// the kernel grants them on request (`madvise` mode, Debian's default) every touched 2 MiB
/// region is resident whole, which more than doubles the agent's small footprint (measured:
/// 19 MB resident instead of 8 MB). The runtime allocates before `main`, so turning them off
/// then is too late for the first arena: the flag is set and the process replaces itself
/// (`execve`, same pid and arguments), and the new image, which inherits the flag, allocates
/// from the start without huge pages. Returns at once when the flag is already set, and
/// carries on as it is when it cannot be set or the program cannot be executed again. Not for
/// an agent inside the server, whose large heap gains from huge pages.
pub fn use_small_pages() {
    use std::os::unix::process::CommandExt;
    if rustix::thread::transparent_huge_pages_are_disabled().unwrap_or(true)
        || rustix::thread::disable_transparent_huge_pages(true).is_err()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args).exec();
    tracing::debug!(error = %err, "cannot restart without transparent huge pages");
}

/// Completes on SIGINT or SIGTERM (SIGINT only where there is no SIGTERM), for [`run`].
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        tracing::error!("cannot listen for SIGTERM; stopping on SIGINT only");
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn collect_loop(
    shared: Arc<Shared>,
    mut pusher: Option<Pusher>,
    mut stop: watch::Receiver<bool>,
) {
    let mut run = shared.run.subscribe();
    let base: Vec<(&str, String)> = shared
        .identity
        .labels()
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .chain([("job", JOB.to_string()), ("instance", shared.address.clone())])
        .collect();
    let base: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    loop {
        let rc = *run.borrow_and_update();
        let mut tick = tokio::time::interval(Duration::from_secs(rc.interval_seconds.into()));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                changed = run.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = tick.tick() => {}
            }
            let Some(p) = pusher.as_mut() else { continue };
            let res = if rc.mode == Mode::Push {
                push_once(&shared, p, &base).await
            } else if p.has_backlog() {
                p.drain().await
            } else {
                Ok(())
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "push output failed");
            }
        }
    }
}

async fn push_once(shared: &Arc<Shared>, p: &mut Pusher, base: &[(&str, &str)]) -> Result<()> {
    let ts = now_ms();
    let families = shared.collect_all().await?;
    let series = crate::push::to_series(&families, base, ts);
    let body =
        ocelli_wire::remote_write::encode(&series).map_err(|e| Error::Internal(e.to_string()))?;
    p.push(body).await
}

async fn heartbeat_loop(shared: Arc<Shared>, mut client: Client, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        let rc = *shared.run.borrow();
        let beat = Beat::new(&shared.identity, &shared.address, rc);
        match crate::heartbeat::beat(&mut client, &beat).await {
            Ok(want) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("heartbeat answered again");
                }
                if want != rc {
                    tracing::info!(mode = %want.mode, interval_seconds = want.interval_seconds,
                        "the server asks for another mode or interval; switching");
                    shared.run.send_replace(want);
                }
            }
            Err(e) => {
                shared.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, mode = %rc.mode, "heartbeat failed; keeping the current mode and retrying");
                }
            }
        }
        let period = crate::heartbeat::period_seconds(shared.run.borrow().interval_seconds);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_secs(period.into())) => {}
        }
    }
}
