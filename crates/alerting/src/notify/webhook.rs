//! The webhook integration: Alertmanager's webhook payload, version 4, POSTed as JSON to the
//! configured URL. The field names and their order are Alertmanager's (`receiver`, `status`,
//! `alerts`, `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`, `version`,
//! `groupKey`, `truncatedAlerts`), so receivers written for Alertmanager read it unchanged.
//! `max_alerts` keeps the first that many alerts and counts the rest in `truncatedAlerts`.

use std::time::Duration;

use serde::Serialize;

use super::config::WebhookConfig;
use super::text::Notification;
use crate::LabelMap;
use ocelli_http::client::{self, Failure};

/// The payload's top level.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message<'a> {
    pub receiver: &'a str,
    pub status: &'static str,
    pub alerts: Vec<AlertJson<'a>>,
    pub group_labels: &'a LabelMap,
    pub common_labels: LabelMap,
    pub common_annotations: LabelMap,
    #[serde(rename = "externalURL")]
    pub external_url: &'a str,
    pub version: &'static str,
    pub group_key: &'a str,
    pub truncated_alerts: usize,
}

/// One alert in the payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertJson<'a> {
    pub status: &'static str,
    pub labels: &'a LabelMap,
    pub annotations: &'a LabelMap,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
    pub fingerprint: String,
}

/// The payload for `n`, keeping at most `max_alerts` alerts (0: all).
pub fn message(n: &Notification, max_alerts: usize) -> Message<'_> {
    let keep = if max_alerts == 0 { n.alerts.len() } else { max_alerts.min(n.alerts.len()) };
    Message {
        receiver: &n.receiver,
        status: n.status(),
        alerts: n.alerts[..keep]
            .iter()
            .map(|a| AlertJson {
                status: n.alert_status(a),
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: super::text::time(a.starts_at_ms),
                ends_at: n.ends_at(a),
                generator_url: &a.generator_url,
                fingerprint: Notification::fingerprint(a),
            })
            .collect(),
        group_labels: &n.group_labels,
        common_labels: n.common_labels(),
        common_annotations: n.common_annotations(),
        external_url: &n.external_url,
        version: "4",
        group_key: &n.group_key,
        truncated_alerts: n.alerts.len() - keep,
    }
}

pub async fn notify(c: &WebhookConfig, n: &Notification, timeout: Duration) -> Result<(), Failure> {
    client::post_json(&c.url, &message(n, c.max_alerts), timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::tests::{alert, notification};

    #[test]
    fn payload_version_4_golden() {
        let n = notification(vec![
            alert(&[("alertname", "HighLoad"), ("instance", "node1")], 1_700_000_300_000),
            alert(&[("alertname", "HighLoad"), ("instance", "node2")], 1_700_000_030_500),
        ]);
        let got = serde_json::to_string(&message(&n, 0)).unwrap();
        let want = concat!(
            r#"{"receiver":"team","status":"firing","alerts":["#,
            r#"{"status":"firing","labels":{"alertname":"HighLoad","instance":"node1"},"annotations":{"summary":"load is high"},"startsAt":"2023-11-14T22:13:20Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"#,
            "\"", "{fp1}", "\"},",
            r#"{"status":"resolved","labels":{"alertname":"HighLoad","instance":"node2"},"annotations":{"summary":"load is high"},"startsAt":"2023-11-14T22:13:20Z","endsAt":"2023-11-14T22:13:50.5Z","generatorURL":"http://prom/graph","fingerprint":"#,
            "\"", "{fp2}", "\"}],",
            r#""groupLabels":{"alertname":"HighLoad"},"commonLabels":{"alertname":"HighLoad"},"commonAnnotations":{"summary":"load is high"},"externalURL":"http://ocelli:9747","version":"4","groupKey":"{}:{alertname=\"HighLoad\"}","truncatedAlerts":0}"#
        )
        .replace("{fp1}", &Notification::fingerprint(&n.alerts[0]))
        .replace("{fp2}", &Notification::fingerprint(&n.alerts[1]));
        assert_eq!(got, want);
        let truncated = message(&n, 1);
        assert_eq!((truncated.alerts.len(), truncated.truncated_alerts), (1, 1));
    }
}
