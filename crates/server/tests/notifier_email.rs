//! The notifier's e-mail receiver against a real SMTP server on loopback: Debian's aiosmtpd,
//! started through `smtp_sink.py` (beside this file) with STARTTLS on a certificate this test
//! makes (a CA and a `localhost` leaf, with `rcgen`) and AUTH for one user. The server writes
//! each message it accepts, with the authenticated user and the mechanism, to a folder that the
//! tests read back.
//!
//! Scenarios: STARTTLS, PLAIN authentication and `ca_file` deliver (user, headers and body read
//! back); LOGIN when the server offers only that, with `auth_password_file` and `server_name`;
//! a wrong password fails for good on the first attempt with the server's words in history;
//! `require_tls` against a server without STARTTLS fails clearly (and `require_tls: false`
//! delivers there); a certificate from an unknown CA, or for another name, fails for good,
//! and `insecure_skip_verify` accepts it.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocelli_server::alerting::notify::{Notifier, NotifierConfig};
use ocelli_server::alerting::{Alert, AlertSink, HistoryEvent, MemoryHistory, Outcome};
use ocelli_testkit::{Service, free_port, require};
use serde_json::Value;

const USER: &str = "alerts@example.org";
const PASSWORD: &str = "correct horse";

/// A CA and a leaf certificate for `localhost` signed by it, as PEM files in `dir`.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Ocelli test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key)).unwrap();
    let certs =
        Certs { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&certs.ca, ca.pem()).unwrap();
    std::fs::write(&certs.cert, leaf.pem()).unwrap();
    std::fs::write(&certs.key, leaf_key.serialize_pem()).unwrap();
    certs
}

/// `smtp_sink.py` on aiosmtpd, killed when dropped.
struct Sink {
    _svc: Service,
    port: u16,
    out: tempfile::TempDir,
}

impl Sink {
    /// `tls`: STARTTLS (required) with these certificates; then AUTH is required too, for
    /// [`USER`] and [`PASSWORD`], with only `only` offered when given.
    fn start(tls: Option<&Certs>, only: Option<&str>) -> Sink {
        require("python3-aiosmtpd", "aiosmtpd");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let out = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg(script).arg(port.to_string()).arg(out.path());
        if let Some(c) = tls {
            cmd.arg("--tls").args([&c.cert, &c.key]).args(["--user", USER, PASSWORD]);
        }
        if let Some(m) = only {
            cmd.args(["--only", m]);
        }
        let svc =
            Service::start(cmd, SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30));
        Sink { _svc: svc, port, out }
    }

    /// The messages accepted so far, in order.
    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.out.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .collect();
        files.sort();
        files
            .iter()
            .map(|(_, p)| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

/// One e-mail receiver entry of the YAML: the common fields and `extra` lines (each indented
/// for the entry's body).
fn email_receiver(name: &str, port: u16, host: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    email_configs:\n      - to: ops@example.org\n        from: ocelli@example.org\n        smarthost: {host}:{port}\n        headers:\n          X-Team: infra\n{extra}"
    )
}

/// Starts a notifier whose root route fans out to every receiver in `receivers` (YAML entries)
/// and sends it one alert.
async fn notify(dir: &Path, names: &[&str], receivers: &str) -> (Notifier, Arc<MemoryHistory>) {
    let routes: String =
        names.iter().map(|n| format!("    - receiver: {n}\n      continue: true\n")).collect();
    let yaml = format!(
        "route:\n  receiver: {first}\n  group_by: [alertname]\n  group_wait: 50ms\n  group_interval: 1m\n  routes:\n{routes}receivers:\n{receivers}",
        first = names[0]
    );
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, yaml).unwrap();
    let config = NotifierConfig {
        config_file: Some(path),
        max_retries: 2,
        retry_backoff: "50ms".into(),
        timeout: "10s".into(),
        external_url: "http://ocelli.test:9747".into(),
        ..NotifierConfig::default()
    };
    let history = Arc::new(MemoryHistory::default());
    let n = Notifier::start(&config, history.clone(), dir).await.unwrap();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    n.send(vec![Alert {
        labels: [("alertname", "DiskFull"), ("instance", "db1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: [("summary".to_string(), "disk is full".to_string())].into(),
        starts_at_ms: now,
        ends_at_ms: now + 600_000,
        generator_url: "http://prometheus/graph".into(),
    }]);
    (n, history)
}

/// One receiver's attempts as (outcome, attempt, error).
type Attempts = Vec<(Outcome, u32, Option<String>)>;

/// Each receiver's attempts, once every receiver in `names` has a final outcome (success or
/// failure).
async fn outcomes(h: &MemoryHistory, names: &[&str]) -> Vec<(String, Attempts)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<(String, Attempts)> = names
            .iter()
            .map(|name| {
                let of = h
                    .0
                    .lock()
                    .iter()
                    .filter_map(|e| match e {
                        HistoryEvent::Notification {
                            receiver, outcome, attempt, error, ..
                        } if receiver == name => Some((*outcome, *attempt, error.clone())),
                        _ => None,
                    })
                    .collect();
                (name.to_string(), of)
            })
            .collect();
        let done = got
            .iter()
            .all(|(_, a)| a.iter().any(|x| matches!(x.0, Outcome::Success | Outcome::Failure)));
        if done {
            return got;
        }
        assert!(Instant::now() < deadline, "no final outcome for every receiver: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_plain_auth_deliver_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let sink = Sink::start(Some(&certs), None);
    // ca_file relative to the YAML file's folder
    let extra = format!(
        "        auth_username: {USER}\n        auth_password: {PASSWORD}\n        tls_config:\n          ca_file: ca.pem\n"
    );
    let (n, history) =
        notify(dir.path(), &["team"], &email_receiver("team", sink.port, "localhost", &extra))
            .await;
    let got = outcomes(&history, &["team"]).await;
    assert_eq!(got[0].1, [(Outcome::Success, 1, None)], "{got:?}");
    let m = sink.messages();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["user"], USER);
    assert_eq!(m[0]["mechanism"], "PLAIN", "PLAIN is preferred when both are offered");
    assert_eq!(m[0]["tls"], true);
    assert_eq!(m[0]["mail_from"], "ocelli@example.org");
    assert_eq!(m[0]["rcpt_tos"], serde_json::json!(["ops@example.org"]));
    let content = m[0]["content"].as_str().unwrap();
    assert!(content.contains("Subject: [FIRING:1] DiskFull (db1)\r\n"), "{content}");
    assert!(content.contains("X-Team: infra\r\n"), "{content}");
    assert!(content.contains("- DiskFull: disk is full"), "{content}");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_auth_with_a_password_file_and_a_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let sink = Sink::start(Some(&certs), Some("LOGIN"));
    // the file ends in a line break, as `echo` writes it; it is not part of the password
    std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
    // by address, so the certificate's name comes from server_name
    let extra = format!(
        "        auth_username: {USER}\n        auth_password_file: {}\n        tls_config:\n          ca_file: {}\n          server_name: localhost\n",
        dir.path().join("password").display(),
        certs.ca.display()
    );
    let (n, history) =
        notify(dir.path(), &["team"], &email_receiver("team", sink.port, "127.0.0.1", &extra))
            .await;
    let got = outcomes(&history, &["team"]).await;
    assert_eq!(got[0].1, [(Outcome::Success, 1, None)], "{got:?}");
    let m = sink.messages();
    assert_eq!((m.len(), &m[0]["user"], &m[0]["mechanism"]), (1, &USER.into(), &"LOGIN".into()));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_for_good_with_the_servers_words() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let sink = Sink::start(Some(&certs), None);
    let extra = format!(
        "        auth_username: {USER}\n        auth_password: wrong\n        tls_config:\n          ca_file: ca.pem\n"
    );
    let (n, history) =
        notify(dir.path(), &["team"], &email_receiver("team", sink.port, "localhost", &extra))
            .await;
    let got = outcomes(&history, &["team"]).await;
    assert_eq!(
        got[0].1,
        [(
            Outcome::Failure,
            1,
            Some(format!(
                "SMTP localhost:{}: permanent error (535): 5.7.8 Authentication credentials invalid",
                sink.port
            ))
        )],
        "no retries after a refused login"
    );
    // retries would have come after 50 ms
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outcomes(&history, &["team"]).await[0].1.len(), 1);
    assert!(sink.messages().is_empty());
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_against_a_server_without_starttls_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(None, None);
    let receivers = [
        email_receiver("required", sink.port, "127.0.0.1", ""),
        email_receiver("plain", sink.port, "127.0.0.1", "        require_tls: false\n"),
    ]
    .concat();
    let (n, history) = notify(dir.path(), &["required", "plain"], &receivers).await;
    let got = outcomes(&history, &["required", "plain"]).await;
    assert_eq!(
        got[0].1,
        [(
            Outcome::Failure,
            1,
            Some(format!(
                "SMTP 127.0.0.1:{}: the server does not offer STARTTLS and require_tls is true (set require_tls: false to send unencrypted)",
                sink.port
            ))
        )]
    );
    assert_eq!(got[1].1, [(Outcome::Success, 1, None)], "{got:?}");
    let m = sink.messages();
    assert_eq!((m.len(), &m[0]["tls"], &m[0]["user"]), (1, &false.into(), &Value::Null));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_and_insecure_skip_verify_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let sink = Sink::start(Some(&certs), None);
    let auth = format!("        auth_username: {USER}\n        auth_password: {PASSWORD}\n");
    let receivers = [
        // the Mozilla roots only: the test CA is unknown
        email_receiver("no-ca", sink.port, "localhost", &auth),
        // the right CA, but the certificate is for localhost, not 127.0.0.1
        email_receiver(
            "other-name",
            sink.port,
            "127.0.0.1",
            &format!("{auth}        tls_config:\n          ca_file: ca.pem\n"),
        ),
        email_receiver(
            "unchecked",
            sink.port,
            "127.0.0.1",
            &format!("{auth}        tls_config:\n          insecure_skip_verify: true\n"),
        ),
    ]
    .concat();
    let names = ["no-ca", "other-name", "unchecked"];
    let (n, history) = notify(dir.path(), &names, &receivers).await;
    let got = outcomes(&history, &names).await;
    let hint = "(tls_config: ca_file, server_name)";
    assert_eq!(
        got[0].1,
        [(
            Outcome::Failure,
            1,
            Some(format!(
                "SMTP localhost:{}: TLS handshake failed: invalid peer certificate: UnknownIssuer {hint}",
                sink.port
            ))
        )]
    );
    let (outcome, attempt, error) = &got[1].1[0];
    assert_eq!((got[1].1.len(), *outcome, *attempt), (1, Outcome::Failure, 1), "{got:?}");
    let error = error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!(
            "SMTP 127.0.0.1:{}: TLS handshake failed: invalid peer certificate: certificate not valid for name",
            sink.port
        )) && error.ends_with(hint),
        "{error}"
    );
    assert_eq!(got[2].1, [(Outcome::Success, 1, None)], "{got:?}");
    let m = sink.messages();
    assert_eq!((m.len(), &m[0]["user"], &m[0]["tls"]), (1, &USER.into(), &true.into()));
    n.shutdown().await;
}
