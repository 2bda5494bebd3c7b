//! Tests of the YAML parser: the example file, each section, and errors with their lines.

use super::*;
use crate::notify::route::Tree;

fn err(yaml: &str) -> String {
    parse(yaml, "am.yml").unwrap_err()
}

fn ok(yaml: &str) -> Settings {
    parse(yaml, "am.yml").unwrap()
}

const MIN: &str = "route:\n  receiver: a\nreceivers:\n- name: a\n";

#[test]
fn the_example_file_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/alertmanager.example.yml");
    let s = parse(&std::fs::read_to_string(&path).unwrap(), "alertmanager.example.yml").unwrap();
    assert_eq!(s.resolve_timeout, Duration::from_secs(300));
    assert_eq!(s.receivers.len(), 3);
    let email = &s.receivers[0].email[0];
    // global defaults fill what the entry leaves out
    assert_eq!(email.smarthost, "smtp.example.org:587");
    assert_eq!(email.from, "Ocelli <ocelli@example.org>");
    assert_eq!(email.auth_username.as_deref(), Some("ocelli"));
    assert!(email.require_tls && email.send_resolved);
    assert_eq!(email.headers.get("X-Ocelli-Team").map(String::as_str), Some("ops"));
    assert_eq!(email.tls.server_name.as_deref(), Some("smtp.example.org"));
    assert!(!email.tls.insecure_skip_verify && email.tls.ca_file.is_none());
    let slack = &s.receivers[1].slack[0];
    assert_eq!(slack.api_url, "https://hooks.slack.com/services/T000/B000/XXXX");
    assert_eq!((slack.channel.as_str(), slack.username.as_str()), ("#alerts", "Ocelli"));
    assert_eq!(s.receivers[2].webhook[0].max_alerts, 20);
    assert_eq!(
        s.route.group_by,
        Some(GroupBy::Labels(vec!["alertname".into(), "ns".into(), "service_id".into()]))
    );
    assert_eq!(s.route.repeat_interval, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(s.route.routes[1].group_by, Some(GroupBy::All));
    assert_eq!(s.route.routes[1].routes[0].matchers.len(), 2);
    assert_eq!(s.inhibit_rules.len(), 2);
    assert_eq!(s.inhibit_rules[1].target_matchers[0].to_string(), r#"alertname=~"Node.+""#);
    // routing by the example: a critical db alert goes to Slack (continue) and the db webhook
    let t = Tree::compile(&s.route, &[]);
    let labels: crate::LabelMap = [("severity", "critical"), ("service", "mysql"), ("env", "prod")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let got: Vec<&str> = t.matches(&labels).iter().map(|n| n.receiver.as_str()).collect();
    assert_eq!(got, ["ops-slack", "db-webhook"]);
}

#[test]
fn defaults_and_minimal_file() {
    let s = ok(MIN);
    assert_eq!(s.resolve_timeout, Duration::from_secs(300));
    assert_eq!(s.route.receiver.as_deref(), Some("a"));
    assert!(s.route.group_by.is_none() && s.inhibit_rules.is_empty());
    let w = ok(
        "route:\n  receiver: w\nreceivers:\n- name: w\n  webhook_configs:\n  - url: http://h:1/x\n",
    );
    // webhooks send resolved notifications unless told not to; Slack and e-mail do not
    assert!(w.receivers[0].webhook[0].send_resolved);
    let sl = ok(
        "global:\n  slack_api_url: http://h/s\nroute:\n  receiver: s\nreceivers:\n- name: s\n  slack_configs:\n  - channel: '#a'\n",
    );
    assert!(!sl.receivers[0].slack[0].send_resolved);
    assert_eq!(sl.receivers[0].slack[0].username, "Alertmanager");
}

#[test]
fn errors_name_the_file_and_line() {
    assert_eq!(
        err("route:\n  receiver: a\n  bogus: 1\nreceivers:\n- name: a\n"),
        "am.yml: line 3, column 3: unknown field `bogus`, expected one of receiver, group_by, group_wait, group_interval, repeat_interval, matchers, match, match_re, continue, routes"
    );
    assert!(err("route: [\n").starts_with("am.yml: line 1, column 8: "));
    assert_eq!(
        err("route:\n  receiver: nobody\nreceivers:\n- name: a\n"),
        "am.yml: line 2, column 13: route.receiver: \"nobody\" is not defined in receivers"
    );
    assert_eq!(
        err("route:\n  receiver: a\n  group_wait: 5 minutes\nreceivers:\n- name: a\n"),
        "am.yml: line 3, column 15: route.group_wait: invalid duration \"5 minutes\" (use e.g. 30s, 5m, 1h30m)"
    );
    assert_eq!(
        err("route:\n  receiver: a\n  routes:\n  - matchers: ['severity=~\"(\"']\nreceivers:\n- name: a\n")
            .split(": matcher")
            .next()
            .unwrap(),
        "am.yml: line 4, column 16: route.matchers"
    );
    assert_eq!(
        err("route:\n  receiver: a\n  group_by: ['...', job]\nreceivers:\n- name: a\n"),
        "am.yml: line 3, column 13: route.group_by: '...' must be the only entry (it groups by all labels)"
    );
    assert_eq!(
        err("route:\n  receiver: a\nreceivers:\n- name: a\n- name: a\n"),
        "am.yml: line 5, column 9: receivers: \"a\" is defined twice"
    );
    assert_eq!(
        err("route:\n  receiver: a\n  matchers: [a=b]\nreceivers:\n- name: a\n"),
        "am.yml: line 2, column 3: route: the root route must not have matchers (it takes every alert)"
    );
    assert_eq!(
        err("receivers:\n- name: a\n"),
        "am.yml: no `route:` section (the root route is required)"
    );
    assert_eq!(
        err("route:\n  receiver: a\nreceivers:\n- name: a\n  slack_configs:\n  - channel: x\n"),
        "am.yml: line 6, column 5: receiver \"a\": slack_configs[0]: no api_url and no global.slack_api_url"
    );
    assert_eq!(
        err(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  webhook_configs:\n  - url: ftp://h/x\n"
        ),
        "am.yml: line 6, column 10: receiver \"a\": webhook_configs[0].url: \"ftp://h/...\" is not an http:// or https:// URL"
    );
    assert_eq!(
        err(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  email_configs:\n  - to: x@y\n    from: a@b\n"
        ),
        "am.yml: line 6, column 5: receiver \"a\": email_configs[0]: no smarthost and no global.smtp_smarthost"
    );
    assert_eq!(
        err(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  email_configs:\n  - to: x@y\n    from: a@b\n    smarthost: nohost\n"
        ),
        "am.yml: line 8, column 16: receiver \"a\": email_configs[0].smarthost: \"nohost\" is not host:port"
    );
    assert_eq!(
        err(
            "global:\n  slack_api_url: http://h/s\nroute:\n  receiver: a\nreceivers:\n- name: a\n  slack_configs:\n  - title: '{{ .Status }}'\n"
        ),
        "am.yml: line 8, column 12: receiver \"a\": slack_configs[0].title: Go templates are not supported; give fixed text or leave the field out for the built-in one"
    );
    assert_eq!(
        err("templates: ['/etc/am/*.tmpl']\nroute:\n  receiver: a\nreceivers:\n- name: a\n"),
        "am.yml: line 1, column 13: templates: Go templates are not supported; remove the entry (notifications use built-in titles and texts)"
    );
    assert!(
        err("route:\n  receiver: a\nreceivers:\n- name: a\n  pagerduty_configs: []\n")
            .starts_with("am.yml: line 5, column 3: unknown field `pagerduty_configs`")
    );
    assert!(
        err("global:\n  resolve_timeout: 5\nroute:\n  receiver: a\nreceivers:\n- name: a\n")
            .contains("global.resolve_timeout: invalid duration \"5\"")
    );
}

#[test]
fn inhibit_rules_both_forms() {
    let s = ok(&format!(
        "{MIN}inhibit_rules:\n- source_matchers: ['severity=\"critical\"']\n  target_match:\n    severity: warning\n  equal: [alarm_id, vm_id]\n"
    ));
    let r = &s.inhibit_rules[0];
    assert_eq!(r.source_matchers[0].to_string(), r#"severity="critical""#);
    assert_eq!(r.target_matchers[0].to_string(), r#"severity="warning""#);
    assert_eq!(r.equal, ["alarm_id", "vm_id"]);
    assert!(
        err(&format!("{MIN}inhibit_rules:\n- equal: ['1x']\n"))
            .ends_with("equal: \"1x\" is not a valid label name")
    );
}

#[test]
fn the_toml_section_is_checked() {
    let d = NotifierConfig::default().delivery().unwrap();
    assert_eq!(
        (d.max_retries, d.retry_backoff, d.timeout),
        (3, Duration::from_secs(1), Duration::from_secs(10))
    );
    let bad = NotifierConfig { retry_backoff: "soon".into(), ..NotifierConfig::default() };
    assert_eq!(
        bad.delivery().unwrap_err(),
        "notifier.retry_backoff: invalid duration \"soon\" (use e.g. 1s, 500ms, 1m30s)"
    );
    let bad = NotifierConfig { alertmanagers: vec!["am:9093".into()], ..NotifierConfig::default() };
    assert_eq!(
        bad.delivery().unwrap_err(),
        "notifier.alertmanagers[0]: \"am:9093\" is not an http:// or https:// URL"
    );
    let good = NotifierConfig {
        alertmanagers: vec!["http://am:9093/".into()],
        ..NotifierConfig::default()
    };
    assert_eq!(good.delivery().unwrap().alertmanagers[0].authority(), "am:9093");
}

#[test]
fn email_tls_config_and_password_file() {
    let email = |fields: &str| {
        format!(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  email_configs:\n  - to: x@y\n    from: a@b\n    smarthost: mail:587\n{fields}"
        )
    };
    let c = &ok(&email(
        "    tls_config:\n      ca_file: certs/ca.pem\n      server_name: mail.example.org\n      insecure_skip_verify: true\n",
    ))
    .receivers[0]
        .email[0];
    let want = TlsConfig {
        ca_file: Some("certs/ca.pem".into()),
        server_name: Some("mail.example.org".into()),
        insecure_skip_verify: true,
    };
    assert_eq!(c.tls, want);
    // defaults: verify against the Mozilla roots and the smarthost's name
    assert_eq!(ok(&email("")).receivers[0].email[0].tls, TlsConfig::default());
    assert!(
        err(&email("    tls_config:\n      cert_file: c.pem\n")).starts_with(
            "am.yml: line 10, column 7: unknown field `cert_file`, expected one of ca_file, server_name, insecure_skip_verify"
        ),
        "{}",
        err(&email("    tls_config:\n      cert_file: c.pem\n"))
    );
    assert_eq!(
        err(&email("    tls_config:\n      server_name: ''\n")),
        "am.yml: line 10, column 20: receiver \"a\": email_configs[0].tls_config.server_name: must not be empty"
    );
    assert_eq!(
        err(&email("    auth_password: x\n    auth_password_file: /run/pw\n")),
        "am.yml: line 10, column 25: receiver \"a\": email_configs[0]: give auth_password or auth_password_file, not both"
    );
    let g = ok(&format!(
        "global:\n  smtp_auth_password: global\n{}",
        email("    auth_username: u\n    auth_password_file: pw\n")
    ));
    let c = &g.receivers[0].email[0];
    // the entry's file wins over the global password
    assert_eq!(
        (c.auth_password.as_deref(), c.auth_password_file.as_deref()),
        (None, Some(Path::new("pw")))
    );
}

#[test]
fn parse_file_resolves_and_checks_the_named_files() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = |fields: &str| {
        format!(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  email_configs:\n  - to: x@y\n    from: a@b\n    smarthost: mail:587\n{fields}"
        )
    };
    let parsed = |fields: &str| parse_file(&yaml(fields), "am.yml", dir.path());
    let ca = dir.path().join("ca.pem");
    let missing = parsed("    tls_config:\n      ca_file: ca.pem\n").unwrap_err();
    assert!(
        missing.starts_with(&format!(
            "am.yml: line 10, column 16: receiver \"a\": email_configs[0].tls_config.ca_file: {}: cannot read it: ",
            ca.display()
        )),
        "{missing}"
    );
    std::fs::write(&ca, "not a certificate\n").unwrap();
    assert!(
        parsed("    tls_config:\n      ca_file: ca.pem\n")
            .unwrap_err()
            .ends_with("ca.pem: holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    );
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let bad = parsed("    tls_config:\n      ca_file: ca.pem\n").unwrap_err();
    assert!(bad.ends_with("ca.pem: certificate 1 is not usable as a root (BadEncoding)"), "{bad}");
    let pw = parsed("    auth_password_file: secret\n").unwrap_err();
    assert!(pw.contains("email_configs[0].auth_password_file: "), "{pw}");
    std::fs::write(dir.path().join("secret"), "pw\n").unwrap();
    let s = parsed("    auth_password_file: secret\n").unwrap();
    assert_eq!(s.receivers[0].email[0].auth_password_file, Some(dir.path().join("secret")));
}
