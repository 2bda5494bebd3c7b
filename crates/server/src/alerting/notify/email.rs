//! The e-mail integration: one plain-text message per notification over SMTP (`lettre`), with
//! Alertmanager's subject line (or the `Subject` header given), the configured extra headers,
//! and the list of alerts as the body.
//!
//! Transport, as Alertmanager's: port 465 speaks TLS from the first byte; otherwise
//! `require_tls: true` (the default) demands STARTTLS and fails against a server that does not
//! offer it, and `require_tls: false` talks plain SMTP. With `auth_username` set, PLAIN or
//! LOGIN authentication is used. TLS is rustls with ring and the Mozilla roots. SMTP answers in
//! the 5xx range fail for good; everything else (connection errors, 4xx, timeouts) is worth
//! another try.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::client::Failure;
use super::config::EmailConfig;
use super::text::Notification;

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

pub async fn notify(c: &EmailConfig, n: &Notification, timeout: Duration) -> Result<(), Failure> {
    let msg = message(c, n)?;
    let (host, port) = c
        .smarthost
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?))
        })
        .ok_or_else(|| permanent(format!("smarthost {:?} is not host:port", c.smarthost)))?;
    let tls_err = |e: lettre::transport::smtp::Error| permanent(format!("smarthost {host}: {e}"));
    let builder = if port == 465 {
        AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(tls_err)?
    } else if c.require_tls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(tls_err)?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let Some(user) = &c.auth_username {
        builder = builder
            .credentials(Credentials::new(
                user.clone(),
                c.auth_password.clone().unwrap_or_default(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    let sent = tokio::time::timeout(timeout, transport.send(msg)).await;
    match sent {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            Err(Failure { message: format!("SMTP {}: {e}", c.smarthost), retry: !e.is_permanent() })
        }
        Err(_) => Err(Failure {
            message: format!("SMTP {}: no answer within {timeout:?}", c.smarthost),
            retry: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::notify::text::tests::{alert, notification};

    #[test]
    fn headers_and_body() {
        let c = EmailConfig {
            to: "ops@example.org, oncall@example.org".into(),
            from: "Ocelli <ocelli@example.org>".into(),
            smarthost: "127.0.0.1:25".into(),
            auth_username: None,
            auth_password: None,
            require_tls: false,
            headers: [("X-Team".to_string(), "infra".to_string())].into(),
            send_resolved: false,
        };
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
}
