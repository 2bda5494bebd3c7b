//! The Slack integration: a message to an incoming webhook (`api_url`), with one attachment
//! that carries the title (Alertmanager's subject line, or the configured `title`), the text
//! (the list of alerts, or the configured `text`), a link to this server's alerts, and the
//! colour Alertmanager uses (`danger` while firing, `good` once resolved).

use std::time::Duration;

use serde_json::json;

use super::config::SlackConfig;
use super::text::Notification;
use ocelli_http::client::{self, Failure};

/// The JSON body sent to Slack.
pub fn payload(c: &SlackConfig, n: &Notification) -> serde_json::Value {
    let title = c.title.clone().unwrap_or_else(|| n.subject());
    let text = c.text.clone().unwrap_or_else(|| n.body());
    let link = n.alerts_url();
    let mut body = json!({
        "username": c.username,
        "attachments": [{
            "title": title,
            "title_link": link,
            "text": text,
            "fallback": format!("{title} | {link}"),
            "color": if n.status() == "firing" { "danger" } else { "good" },
            "mrkdwn_in": ["fallback", "pretext", "text"],
        }],
    });
    if !c.channel.is_empty() {
        body["channel"] = json!(c.channel);
    }
    body
}

pub async fn notify(c: &SlackConfig, n: &Notification, timeout: Duration) -> Result<(), Failure> {
    client::post_json(&c.api_url, &payload(c, n), timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::tests::{alert, notification};

    #[test]
    fn message_shape() {
        let c = SlackConfig {
            api_url: "http://127.0.0.1:1/hook".into(),
            channel: "#ops".into(),
            username: "Alertmanager".into(),
            title: None,
            text: None,
            send_resolved: true,
        };
        let n = notification(vec![alert(
            &[("alertname", "HighLoad"), ("instance", "node1")],
            1_700_000_300_000,
        )]);
        let p = payload(&c, &n);
        assert_eq!(p["channel"], "#ops");
        assert_eq!(p["username"], "Alertmanager");
        let a = &p["attachments"][0];
        assert_eq!(a["title"], "[FIRING:1] HighLoad (node1)");
        assert_eq!(a["color"], "danger");
        assert_eq!(a["title_link"], "http://ocelli:9747/api/v1/notifier/alerts");
        assert!(
            a["text"]
                .as_str()
                .unwrap()
                .starts_with("Firing alerts (1):\n- HighLoad: load is high\n")
        );
        let fixed = SlackConfig {
            title: Some("Load".into()),
            text: Some("see the dashboard".into()),
            channel: String::new(),
            ..c
        };
        let p = payload(&fixed, &n);
        assert_eq!(
            (p["attachments"][0]["title"].as_str(), p["attachments"][0]["text"].as_str()),
            (Some("Load"), Some("see the dashboard"))
        );
        assert!(p.get("channel").is_none());
    }
}
