//! The e-mail integration: one plain-text message per notification over SMTP (`lettre`), with
//! Alertmanager's subject line (or the `Subject` header given), the configured extra headers,
//! and the list of alerts as the body.
//!
//! Transport, as Alertmanager's ([`Security`]): port 465 speaks TLS from the first byte;
//! otherwise `require_tls: true` (the default) demands STARTTLS and fails against a server that
//! does not offer it, and `require_tls: false` talks plain SMTP. TLS is rustls with ring; the
//! server's certificate must chain to a Mozilla root (`webpki-roots`) or to a certificate of
//! `tls_config.ca_file`, and be valid for `tls_config.server_name` (default: the smarthost's
//! host), unless `insecure_skip_verify`. With `auth_username` set, PLAIN or LOGIN
//! authentication is used, whichever the server offers (PLAIN first); credentials are never
//! sent over an unencrypted connection except to a loopback smarthost (Go's `PlainAuth` rule,
//! which Alertmanager inherits).
//!
//! Failures that another try cannot fix are permanent: SMTP answers in the 5xx range (a refused
//! login among them, with the server's words), a server without STARTTLS when it is required, a
//! certificate that is not trusted, configuration errors. Connection errors, 4xx answers and
//! timeouts are worth another try. Deliberately absent: client certificates, a connection pool
//! (each notification opens its own connection).

use std::path::Path;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use super::config::EmailConfig;
use super::text::Notification;
use ocelli_http::client::Failure;

/// The largest `ca_file` or `auth_password_file` read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

fn permanent(message: String) -> Failure {
    Failure { message, retry: false }
}

/// The message for `n` (also used by the tests to check headers).
pub fn message(c: &EmailConfig, n: &Notification) -> Result<Message, Failure> {
    let from: Mailbox = c
        .from
        .parse()
        .map_err(|e| permanent(format!("from: {:?} is not an address: {e}", c.from)))?;
    let subject = c.headers.get("Subject").cloned().unwrap_or_else(|| n.subject());
    let mut b = Message::builder().from(from).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in c.to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let mbox: Mailbox =
            to.parse().map_err(|e| permanent(format!("to: {to:?} is not an address: {e}")))?;
        b = b.to(mbox);
    }
    for (k, v) in c.headers.iter().filter(|(k, _)| k.as_str() != "Subject") {
        let name = HeaderName::new_from_ascii(k.clone())
            .map_err(|e| permanent(format!("headers: {k:?} is not a header name: {e}")))?;
        b = b.raw_header(HeaderValue::new(name, v.clone()));
    }
    b.body(n.body()).map_err(|e| permanent(format!("cannot build the message: {e}")))
}

/// How the connection to the smarthost is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (port 465, "SMTPS").
    Implicit,
    /// Plain at first, then STARTTLS, which the server must offer.
    StartTls,
    /// No TLS at all.
    Plain,
}

impl Security {
    /// Alertmanager's rule: port 465 is implicit TLS whatever `require_tls` says.
    pub fn of(port: u16, require_tls: bool) -> Security {
        match (port, require_tls) {
            (465, _) => Security::Implicit,
            (_, true) => Security::StartTls,
            (_, false) => Security::Plain,
        }
    }
}

/// `host:port` (the host may be a bracketed IPv6 address).
fn split_smarthost(smarthost: &str) -> Result<(&str, u16), Failure> {
    smarthost
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?))
        })
        .ok_or_else(|| permanent(format!("smarthost {smarthost:?} is not host:port")))
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes is over the limit of {MAX_FILE_BYTES}"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// The certificates of a `ca_file`: at least one, each usable as a root.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_capped(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    for (i, c) in certs.iter().enumerate() {
        rustls::RootCertStore::empty().add(c.clone()).map_err(|e| match e {
            rustls::Error::InvalidCertificate(why) => {
                format!("certificate {} is not usable as a root ({why:?})", i + 1)
            }
            e => format!("certificate {} is not usable as a root: {e}", i + 1),
        })?;
    }
    Ok(certs)
}

/// The password: `auth_password`, or the content of `auth_password_file` read now, without
/// one trailing line break.
fn password(c: &EmailConfig) -> Result<String, Failure> {
    let Some(path) = &c.auth_password_file else {
        return Ok(c.auth_password.clone().unwrap_or_default());
    };
    let bytes = read_capped(path)
        .map_err(|e| permanent(format!("auth_password_file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| permanent(format!("auth_password_file {}: not UTF-8 text", path.display())))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// The TLS setup for `host`, from the `tls_config`.
fn tls_parameters(c: &EmailConfig, host: &str) -> Result<TlsParameters, Failure> {
    let name = c.tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let mut b = TlsParameters::builder(name).certificate_store(CertificateStore::WebpkiRoots);
    if let Some(path) = &c.tls.ca_file {
        let certs = ca_certificates(path)
            .map_err(|e| permanent(format!("tls_config.ca_file {}: {e}", path.display())))?;
        for der in certs {
            let cert = Certificate::from_der(der.to_vec())
                .map_err(|e| permanent(format!("tls_config.ca_file {}: {e}", path.display())))?;
            b = b.add_root_certificate(cert);
        }
    }
    // Go's InsecureSkipVerify skips the name check too
    let skip = c.tls.insecure_skip_verify;
    b = b.dangerous_accept_invalid_certs(skip).dangerous_accept_invalid_hostnames(skip);
    b.build_rustls().map_err(|e| permanent(format!("cannot set up TLS: {e}")))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub async fn notify(c: &EmailConfig, n: &Notification, timeout: Duration) -> Result<(), Failure> {
    let msg = message(c, n)?;
    let (host, port) = split_smarthost(&c.smarthost)?;
    let security = Security::of(port, c.require_tls);
    let tls = match security {
        Security::Plain => Tls::None,
        Security::StartTls => Tls::Required(tls_parameters(c, host)?),
        Security::Implicit => Tls::Wrapper(tls_parameters(c, host)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(user) = &c.auth_username {
        if security == Security::Plain && !is_loopback(host) {
            return Err(permanent(format!(
                "SMTP {}: auth_username is set but require_tls is false; credentials are sent unencrypted only to a loopback smarthost",
                c.smarthost
            )));
        }
        builder = builder
            .credentials(Credentials::new(user.clone(), password(c)?))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    match tokio::time::timeout(timeout, transport.send(msg)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failure(&c.smarthost, &e)),
        Err(_) => Err(Failure {
            message: format!("SMTP {}: no answer within {timeout:?}", c.smarthost),
            retry: true,
        }),
    }
}

/// The rustls error somewhere in `e`'s chain of sources (a failed handshake).
fn tls_error(e: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if let Some(t) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// What a failed send means, in words, and whether another try may help.
fn failure(smarthost: &str, e: &lettre::transport::smtp::Error) -> Failure {
    if let Some(t) = tls_error(e) {
        let retry = !matches!(
            t,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        );
        let hint = if retry { "" } else { " (tls_config: ca_file, server_name)" };
        return Failure {
            message: format!("SMTP {smarthost}: TLS handshake failed: {t}{hint}"),
            retry,
        };
    }
    let text = e.to_string();
    if e.is_client() && text.contains("STARTTLS") {
        return permanent(format!(
            "SMTP {smarthost}: the server does not offer STARTTLS and require_tls is true (set require_tls: false to send unencrypted)"
        ));
    }
    if e.is_client() && text.contains("authentication mechanism") {
        return permanent(format!(
            "SMTP {smarthost}: auth_username is set but the server offers neither PLAIN nor LOGIN authentication"
        ));
    }
    Failure {
        message: format!("SMTP {smarthost}: {text}"),
        retry: !(e.is_permanent() || e.is_client()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::tests::{alert, notification};

    fn config() -> EmailConfig {
        EmailConfig {
            to: "ops@example.org, oncall@example.org".into(),
            from: "Ocelli <ocelli@example.org>".into(),
            smarthost: "127.0.0.1:25".into(),
            auth_username: None,
            auth_password: None,
            auth_password_file: None,
            require_tls: false,
            tls: Default::default(),
            headers: [("X-Team".to_string(), "infra".to_string())].into(),
            send_resolved: false,
        }
    }

    #[test]
    fn headers_and_body() {
        let c = config();
        let n = notification(vec![alert(
            &[("alertname", "HighLoad"), ("instance", "node1")],
            1_700_000_300_000,
        )]);
        let text = String::from_utf8(message(&c, &n).unwrap().formatted()).unwrap();
        assert!(text.contains("Subject: [FIRING:1] HighLoad (node1)\r\n"), "{text}");
        assert!(text.contains("To: ops@example.org, oncall@example.org\r\n"), "{text}");
        assert!(text.contains("X-Team: infra\r\n"), "{text}");
        assert!(text.contains("- HighLoad: load is high"), "{text}");
        let bad = EmailConfig { to: "not an address".into(), ..c };
        assert_eq!(message(&bad, &n).unwrap_err().message.split(':').next(), Some("to"));
    }

    #[test]
    fn port_465_is_implicit_tls_otherwise_require_tls_decides() {
        assert_eq!(Security::of(465, false), Security::Implicit);
        assert_eq!(Security::of(465, true), Security::Implicit);
        assert_eq!(Security::of(587, true), Security::StartTls);
        assert_eq!(Security::of(25, false), Security::Plain);
        assert_eq!(split_smarthost("[::1]:25").unwrap(), ("::1", 25));
        assert!(split_smarthost("mail").is_err());
        assert!(is_loopback("localhost") && is_loopback("127.0.0.2") && is_loopback("::1"));
        assert!(!is_loopback("mail.example.org") && !is_loopback("10.0.0.1"));
    }

    #[tokio::test]
    async fn credentials_are_not_sent_unencrypted_to_a_remote_host() {
        let c = EmailConfig {
            smarthost: "mail.example.org:25".into(),
            auth_username: Some("u".into()),
            ..config()
        };
        let n = notification(vec![alert(&[("alertname", "A")], 1_700_000_300_000)]);
        // refused before connecting (the name need not resolve)
        let f = notify(&c, &n, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            f,
            Failure {
                message: "SMTP mail.example.org:25: auth_username is set but require_tls is false; credentials are sent unencrypted only to a loopback smarthost".into(),
                retry: false
            }
        );
    }

    #[test]
    fn the_password_file_is_read_without_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let c = EmailConfig { auth_password_file: Some(path.clone()), ..config() };
        assert_eq!(password(&c).unwrap(), "s3cret");
        std::fs::remove_file(&path).unwrap();
        let f = password(&c).unwrap_err();
        assert!(
            f.message
                .starts_with(&format!("auth_password_file {}: cannot read it: ", path.display())),
            "{}",
            f.message
        );
    }
}
