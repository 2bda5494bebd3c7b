//! Test support for tests that run real peer services on loopback: Debian's
//! `prometheus-node-exporter` as a scrape target, Debian's `prometheus` as the PromQL reference.
//!
//! [`require`] installs a Debian package when its binary is missing (tests run as root on CI; a
//! machine where that fails gets a panic naming the package to install, never a silent skip),
//! [`free_port`] picks a loopback port, and [`Service`] starts a binary and kills it by PID when
//! dropped, so a failing test leaves no process behind.

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

/// A child process killed by PID (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
}

impl Service {
    /// Starts `cmd` and waits until `addr` accepts TCP connections (at most `timeout`).
    pub fn start(mut cmd: Command, addr: SocketAddr, timeout: Duration) -> Service {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut svc = Service { child, addr };
        let deadline = Instant::now() + timeout;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = svc.child.try_wait() {
                panic!("{cmd:?} exited before listening on {addr}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{cmd:?} did not listen on {addr} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        svc
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the service as an operator would: SIGTERM, then waits (at most `timeout`) for it
    /// to exit, so that it writes out what it holds in memory.
    pub fn terminate(mut self, timeout: Duration) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM to {pid}");
        let deadline = Instant::now() + timeout;
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(Instant::now() < deadline, "process {pid} did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
