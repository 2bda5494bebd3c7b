//! Test support for tests that run real peer services on loopback: Debian's
//! `prometheus-node-exporter` as a scrape target, Debian's `prometheus` as the PromQL reference.
//!
//! [`require`] installs a Debian package when its binary is missing (tests run as root on CI; a
//! machine where that fails gets a panic naming the package to install, never a silent skip),
//! [`free_port`] / [`free_addr`] pick a loopback port, [`wait_for`] polls a condition, [`Proc`]
//! is a child process killed by PID when dropped (its stderr in a log file, for the failure
//! report), and [`Service`] is a [`Proc`] that listens on an address, so a failing test leaves
//! no process behind. Where the program under test can report the port it bound, bind port 0
//! instead of picking one: a picked port can be taken by another process before it is used.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Returns the path of `binary`, installing Debian package `package` first if it is missing.
///
/// Installs are serialised across test processes with a lock file, because dpkg takes one
/// install at a time. The package's own service is not started (Debian's `policy-rc.d`
/// convention: exit code 101 forbids starting services), so it never takes the default ports.
pub fn require(package: &str, binary: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(binary);
    if path.exists() {
        return path;
    }
    let lock = File::create(std::env::temp_dir().join("ocelli-testkit-apt.lock"))
        .unwrap_or_else(|e| panic!("cannot create the apt lock file: {e}"));
    lock.lock().unwrap_or_else(|e| panic!("cannot take the apt lock: {e}"));
    if !path.exists() {
        install(package);
    }
    assert!(
        path.exists(),
        "package {package} installed but {} is missing; install it by hand: apt-get install {package}",
        path.display()
    );
    path
}

fn install(package: &str) {
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let made_policy = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok();
    if made_policy {
        let _ = Command::new("chmod").arg("755").arg(policy).status();
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let installed = apt(&["install", "-y", "-qq", "--no-install-recommends", package])
        || (apt(&["update", "-qq"])
            && apt(&["install", "-y", "-qq", "--no-install-recommends", package]));
    if made_policy {
        let _ = std::fs::remove_file(policy);
    }
    assert!(
        installed,
        "could not install Debian package {package}; run: apt-get install {package}"
    );
}

/// A free loopback port (bound, then released; a race with another process is possible but
/// unlikely, and shows as the service failing to start).
pub fn free_port() -> u16 {
    let l =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind loopback: {e}"));
    l.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("no local address: {e}"))
}

/// A free loopback address: [`free_port`] on 127.0.0.1, with the same caveat.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `ok` every 50 ms until it holds, for at most `limit`; returns how long that took.
/// Panics naming `what` when it does not hold in time.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if ok() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address a process logged as `addr=IP:PORT` in its log file, waiting for it at most
/// `timeout`: a server started on port 0 logs the port it bound, so no other process can take
/// it between a probe and the bind.
pub fn logged_addr(log: &Path, timeout: Duration) -> SocketAddr {
    let mut found = None;
    wait_for(&format!("an addr= line in {}", log.display()), timeout, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        found = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .and_then(|a| a.parse::<SocketAddr>().ok());
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no address in {}", log.display()))
}

/// A child process killed by PID (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `cmd` with no input, its stdout discarded and its stderr appended to `log` (or
    /// discarded without one), so that a failing test can show what the process said.
    pub fn spawn(mut cmd: Command, log: Option<&Path>) -> Proc {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())),
            ),
            None => Stdio::null(),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process, to signal or wait for.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` (`TERM`, `HUP`, ...) by PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIG{signal} to {pid}");
    }

    /// Stops the process as an operator would: SIGTERM, then waits (at most `timeout`) for it
    /// to exit, so that it writes out what it holds in memory. Returns how it exited.
    pub fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {timeout:?}",
                self.child.id()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A [`Proc`] that listens on `addr`.
#[derive(Debug)]
pub struct Service {
    proc: Proc,
    pub addr: SocketAddr,
}

impl Service {
    /// Starts `cmd` and waits until `addr` accepts TCP connections (at most `timeout`).
    pub fn start(cmd: Command, addr: SocketAddr, timeout: Duration) -> Service {
        let what = format!("{cmd:?}");
        let mut svc = Service { proc: Proc::spawn(cmd, None), addr };
        let deadline = Instant::now() + timeout;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = svc.proc.child.try_wait() {
                panic!("{what} exited before listening on {addr}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on {addr} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        svc
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// [`Proc::terminate`].
    pub fn terminate(self, timeout: Duration) {
        self.proc.terminate(timeout);
    }
}

/// A private RabbitMQ broker (Debian's `rabbitmq-server`, installed when missing) on loopback
/// ports, with the consistent-hash exchange plugin, all its files under a temporary folder.
/// Debian's start script runs the broker as the `rabbitmq` user, so the folder is handed to
/// that user. The broker (the `beam.smp` process) and the `epmd` it started are killed by PID
/// when this is dropped.
#[derive(Debug)]
pub struct RabbitMq {
    dir: PathBuf,
    pub port: u16,
    /// The `amqps://` port, for a broker started with [`RabbitMq::start_tls`].
    pub tls_port: Option<u16>,
    dist_port: u16,
    epmd_port: u16,
    name: String,
    launcher: Option<Child>,
}

impl RabbitMq {
    /// Starts a broker and waits (at most 60 s) until it takes AMQP connections.
    pub fn start() -> RabbitMq {
        RabbitMq::start_with(None)
    }

    /// [`RabbitMq::start`] with a TLS listener too (`amqps://`, [`RabbitMq::tls_url`]),
    /// serving the certificate chain and key in these PEM files (copied into the broker's
    /// folder, which its user can read). Clients need no certificate.
    pub fn start_tls(cert_file: &Path, key_file: &Path) -> RabbitMq {
        RabbitMq::start_with(Some((cert_file, key_file)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> RabbitMq {
        require("rabbitmq-server", "../sbin/rabbitmq-server");
        let dir = std::env::temp_dir().join(format!("ocelli-rabbitmq-{}", free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let (port, dist_port, epmd_port) = (free_port(), free_port(), free_port());
        let name = format!("ocelli{port}");
        std::fs::write(dir.join("enabled_plugins"), "[rabbitmq_consistent_hash_exchange].\n")
            .unwrap_or_else(|e| panic!("cannot write the plugin list: {e}"));
        let mut conf = format!("listeners.tcp.default = {port}\nloopback_users = none\n");
        let tls_port = tls.map(|(cert, key)| {
            let tls_port = free_port();
            for (from, to) in [(cert, "server.pem"), (key, "server.key")] {
                std::fs::copy(from, dir.join(to))
                    .unwrap_or_else(|e| panic!("cannot copy {from:?} for rabbitmq: {e}"));
            }
            conf.push_str(&format!(
                "listeners.ssl.default = {tls_port}\n\
                 ssl_options.certfile = {}\nssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ));
            tls_port
        });
        std::fs::write(dir.join("rabbitmq.conf"), conf)
            .unwrap_or_else(|e| panic!("cannot write rabbitmq.conf: {e}"));
        let chown = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&dir).status();
        assert!(chown.is_ok_and(|s| s.success()), "cannot hand {dir:?} to the rabbitmq user");
        let mut mq = RabbitMq { dir, port, tls_port, dist_port, epmd_port, name, launcher: None };
        mq.launch(Duration::from_secs(60));
        mq
    }

    fn launch(&mut self, timeout: Duration) {
        let d = &self.dir;
        let mut cmd = Command::new("/usr/sbin/rabbitmq-server");
        cmd.env("RABBITMQ_NODENAME", format!("{}@localhost", self.name))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("HOME", d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start rabbitmq-server: {e}"));
        self.launcher = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + timeout;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rabbitmq did not listen on {addr} within {timeout:?}; logs in {:?}",
                self.dir.join("log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `amqp://guest:guest@127.0.0.1:{port}/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `amqps://guest:guest@localhost:{tls_port}/%2f` (the host name the certificate names).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.unwrap_or_else(|| panic!("this broker has no TLS listener"));
        format!("amqps://guest:guest@localhost:{port}/%2f")
    }

    /// PIDs of this broker's processes: the VM (`beam.smp`) and the `epmd` it started, found
    /// by the `ERL_EPMD_PORT` in their environment (unique to this broker; their command
    /// lines do not name it).
    fn pids(&self) -> Vec<String> {
        let port_var = format!("ERL_EPMD_PORT={}", self.epmd_port);
        let mut pids = Vec::new();
        for name in ["beam.smp", "epmd"] {
            let found = Command::new("pgrep").args(["-x", name]).output();
            let found: Vec<String> = found
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            for pid in found {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                if env.split(|b| *b == 0).any(|v| v == port_var.as_bytes()) {
                    pids.push(pid);
                }
            }
        }
        if let Some(l) = &self.launcher {
            pids.push(l.id().to_string());
        }
        pids
    }

    /// The PID of the broker's Erlang VM (`beam.smp`), for CPU accounting.
    pub fn broker_pid(&self) -> Option<u32> {
        self.pids().iter().filter_map(|p| p.parse::<u32>().ok()).find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "beam.smp")
        })
    }

    /// Kills the broker (SIGKILL) and waits until its port is free.
    pub fn kill(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        if let Some(mut l) = self.launcher.take() {
            let _ = l.wait();
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker and starts it again on the same ports and files (durable queues and
    /// persistent messages survive).
    pub fn restart(&mut self) {
        self.kill();
        self.launch(Duration::from_secs(60));
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private etcd (Debian's `etcd-server`, installed when missing) on loopback ports, its data
/// in a temporary folder; killed by PID when dropped.
#[derive(Debug)]
pub struct Etcd {
    // fields drop in order: the process goes before its folder
    svc: Service,
    _dir: tempfile_dir::Dir,
    pub url: String,
}

mod tempfile_dir {
    /// A folder removed when dropped.
    #[derive(Debug)]
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::start_with(None)
    }

    /// [`Etcd::start`] serving its client port over TLS with this certificate chain and key
    /// (PEM); [`Etcd::url`] is then `https://localhost:{port}`.
    pub fn start_tls(cert_file: &Path, key_file: &Path) -> Etcd {
        Etcd::start_with(Some((cert_file, key_file)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Etcd {
        let bin = require("etcd-server", "etcd");
        let (client, peer) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("ocelli-etcd-{client}"));
        let listen =
            format!("{}://127.0.0.1:{client}", if tls.is_some() { "https" } else { "http" });
        let url = match tls {
            Some(_) => format!("https://localhost:{client}"),
            None => listen.clone(),
        };
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(&dir)
            .args(["--name", "ocelli-test"])
            .args(["--listen-client-urls", &listen, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("ocelli-test={peer_url}")]);
        if let Some((cert, key)) = tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
        let svc = Service::start(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], client)),
            Duration::from_secs(30),
        );
        Etcd { svc, _dir: tempfile_dir::Dir(dir), url }
    }

    pub fn pid(&self) -> u32 {
        self.svc.pid()
    }
}
