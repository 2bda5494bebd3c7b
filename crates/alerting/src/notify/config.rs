//! The notifier's configuration: the `[notifier]` section of the server's TOML file
//! ([`NotifierConfig`]) and the Alertmanager-format YAML file it names, parsed and checked by
//! the pure function [`parse`] into [`Settings`]; [`parse_file`] also resolves the files the
//! YAML names (`tls_config.ca_file`, `auth_password_file`) against the YAML's folder and checks
//! that they can be read.
//!
//! The YAML subset is Alertmanager 0.25's `global` (`resolve_timeout`, `smtp_from`,
//! `smtp_smarthost`, `smtp_auth_username`, `smtp_auth_password`, `smtp_require_tls`,
//! `slack_api_url`), `route` (`receiver`, `group_by` with `['...']`, `group_wait`,
//! `group_interval`, `repeat_interval`, `matchers`, `match`, `match_re`, `continue`, `routes`),
//! `receivers` (`slack_configs`, `email_configs` with `tls_config` (`ca_file`, `server_name`,
//! `insecure_skip_verify`), `webhook_configs`, with the fields below) and
//! `inhibit_rules` (`source_matchers`, `target_matchers`, `source_match`, `source_match_re`,
//! `target_match`, `target_match_re`, `equal`). Anything else is refused, so a file that relies
//! on a feature Ocelli lacks fails loudly instead of routing differently; so are Go templates
//! (`templates:` entries, `{{` in a title, text or header): notifications use built-in titles
//! and texts ([`super::text`]). Every error names the file and the line.
//!
//! Receiver URLs may be `http://` or `https://` (rustls with the Mozilla roots of
//! `webpki-roots`); e-mail smarthosts are `host:port` (465: TLS from the start; otherwise
//! STARTTLS when `require_tls`, plain when not).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ocelli_model::{MatchOp, Matcher};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::inhibit::InhibitRule;
use super::matchers;
use super::route::{GroupBy, Route};

/// The `[notifier]` section of the server's config file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifierConfig {
    /// An Alertmanager-format YAML file (relative paths are relative to the server's config
    /// file). Without it only `alertmanagers` (and routes set at run time) get alerts.
    pub config_file: Option<PathBuf>,
    /// Alertmanagers to forward every alert to (`POST <url>/api/v2/alerts`), e.g.
    /// `http://alertmanager:9093`.
    pub alertmanagers: Vec<String>,
    /// Attempts after the first for a failed delivery.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one, at most 1 minute.
    pub retry_backoff: String,
    /// Longest one delivery attempt (connect, send, answer) may take.
    pub timeout: String,
    /// This server's URL as people reach it, for links in notifications (`externalURL`).
    /// Empty: `http://<listen address>`.
    pub external_url: String,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            config_file: None,
            alertmanagers: Vec::new(),
            max_retries: 3,
            retry_backoff: "1s".into(),
            timeout: "10s".into(),
            external_url: String::new(),
        }
    }
}

/// The checked form of [`NotifierConfig`]'s own fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub timeout: Duration,
    pub alertmanagers: Vec<ocelli_http::client::Url>,
}

impl NotifierConfig {
    /// Checks the section's own fields; errors name the field.
    pub fn delivery(&self) -> Result<Delivery, String> {
        let dur = |field: &str, v: &str| {
            duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                format!("notifier.{field}: invalid duration {v:?} (use e.g. 1s, 500ms, 1m30s)")
            })
        };
        if self.max_retries > 20 {
            return Err(format!("notifier.max_retries: {} is more than 20", self.max_retries));
        }
        let alertmanagers = self
            .alertmanagers
            .iter()
            .enumerate()
            .map(|(i, u)| {
                ocelli_http::client::Url::parse(u.trim_end_matches('/'))
                    .map_err(|e| format!("notifier.alertmanagers[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Delivery {
            max_retries: self.max_retries,
            retry_backoff: dur("retry_backoff", &self.retry_backoff)?,
            timeout: dur("timeout", &self.timeout)?,
            alertmanagers,
        })
    }
}

/// A Prometheus duration (`30s`, `1h30m`, `500ms`); plain numbers are refused.
pub fn duration(s: &str) -> Option<Duration> {
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    ocelli_model::time::parse_api_duration(s)
        .filter(|ms| *ms >= 0)
        .map(|ms| Duration::from_millis(ms as u64))
}

/// A receiver: a name and its integrations. Constructible from code for routes set at run time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub slack: Vec<SlackConfig>,
    pub email: Vec<EmailConfig>,
    pub webhook: Vec<WebhookConfig>,
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackConfig {
    pub api_url: String,
    pub channel: String,
    pub username: String,
    /// A fixed title instead of the built-in one.
    pub title: Option<String>,
    /// A fixed text instead of the built-in list of alerts.
    pub text: Option<String>,
    pub send_resolved: bool,
}

/// E-mail over SMTP.
#[derive(Clone, Debug, PartialEq)]
pub struct EmailConfig {
    /// Recipients, comma-separated.
    pub to: String,
    pub from: String,
    /// `host:port`.
    pub smarthost: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    /// A file holding the password, read at each send (one trailing line break is dropped).
    pub auth_password_file: Option<PathBuf>,
    pub require_tls: bool,
    /// How the server's certificate is checked (STARTTLS and port 465).
    pub tls: TlsConfig,
    /// Extra headers; `Subject` replaces the built-in subject.
    pub headers: BTreeMap<String, String>,
    pub send_resolved: bool,
}

/// Alertmanager's `tls_config`, the parts that apply to an SMTP client.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsConfig {
    /// PEM certificates trusted as roots beside the Mozilla roots, read at each send.
    pub ca_file: Option<PathBuf>,
    /// The name sent in SNI and checked against the certificate (default: the smarthost's host).
    pub server_name: Option<String>,
    /// Accept any certificate for any name (logged as a warning when the file is loaded).
    pub insecure_skip_verify: bool,
}

/// Alertmanager's webhook (payload version 4).
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    pub send_resolved: bool,
    /// At most this many alerts per notification (0: all); the rest are counted in
    /// `truncatedAlerts`.
    pub max_alerts: usize,
}

/// What the YAML file says, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub resolve_timeout: Duration,
    pub route: Route,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
}

impl Default for Settings {
    /// No file: nothing is routed (the root's receiver has no integrations).
    fn default() -> Self {
        Settings {
            resolve_timeout: Duration::from_secs(300),
            route: Route { receiver: Some(String::new()), ..Route::default() },
            receivers: Vec::new(),
            inhibit_rules: Vec::new(),
        }
    }
}

// ---- the YAML shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    #[serde(default)]
    global: GlobalYaml,
    route: Option<Spanned<RouteYaml>>,
    #[serde(default)]
    receivers: Vec<ReceiverYaml>,
    #[serde(default)]
    inhibit_rules: Vec<InhibitYaml>,
    #[serde(default)]
    templates: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GlobalYaml {
    resolve_timeout: Option<Spanned<String>>,
    smtp_from: Option<String>,
    smtp_smarthost: Option<Spanned<String>>,
    smtp_auth_username: Option<String>,
    smtp_auth_password: Option<String>,
    smtp_require_tls: Option<bool>,
    slack_api_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteYaml {
    receiver: Option<Spanned<String>>,
    group_by: Option<Spanned<Vec<String>>>,
    group_wait: Option<Spanned<String>>,
    group_interval: Option<Spanned<String>>,
    repeat_interval: Option<Spanned<String>>,
    #[serde(default)]
    matchers: Vec<Spanned<String>>,
    #[serde(default, rename = "match")]
    match_eq: BTreeMap<String, String>,
    #[serde(default)]
    match_re: BTreeMap<String, Spanned<String>>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    routes: Vec<Spanned<RouteYaml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiverYaml {
    name: Spanned<String>,
    #[serde(default)]
    slack_configs: Vec<Spanned<SlackYaml>>,
    #[serde(default)]
    email_configs: Vec<Spanned<EmailYaml>>,
    #[serde(default)]
    webhook_configs: Vec<Spanned<WebhookYaml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackYaml {
    api_url: Option<Spanned<String>>,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    username: Option<String>,
    title: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    #[serde(default)]
    send_resolved: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailYaml {
    to: Spanned<String>,
    from: Option<String>,
    smarthost: Option<Spanned<String>>,
    auth_username: Option<String>,
    auth_password: Option<String>,
    auth_password_file: Option<Spanned<String>>,
    require_tls: Option<bool>,
    #[serde(default)]
    tls_config: TlsYaml,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    send_resolved: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsYaml {
    ca_file: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookYaml {
    url: Spanned<String>,
    #[serde(default = "yes")]
    send_resolved: bool,
    #[serde(default)]
    max_alerts: usize,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InhibitYaml {
    #[serde(default)]
    source_matchers: Vec<Spanned<String>>,
    #[serde(default)]
    target_matchers: Vec<Spanned<String>>,
    #[serde(default)]
    source_match: BTreeMap<String, String>,
    #[serde(default)]
    source_match_re: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    target_match: BTreeMap<String, String>,
    #[serde(default)]
    target_match_re: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    equal: Vec<String>,
}

/// Builds errors that name the file and the line.
struct Ctx<'a> {
    origin: &'a str,
    /// The YAML file's folder, when the files it names are to be resolved and checked.
    dir: Option<&'a Path>,
}

impl Ctx<'_> {
    fn at<T>(&self, s: &Spanned<T>, msg: impl std::fmt::Display) -> String {
        format!(
            "{}: line {}, column {}: {msg}",
            self.origin,
            s.referenced.line(),
            s.referenced.column()
        )
    }
}

/// Parses and checks an Alertmanager-format YAML file. `origin` (the file's name) starts
/// every error, followed by the line. The files it names are taken as written, unchecked.
pub fn parse(text: &str, origin: &str) -> Result<Settings, String> {
    parse_in(text, origin, None)
}

/// [`parse`], and the files the YAML names are made relative to `dir` (the YAML file's folder)
/// when relative, and checked: a `ca_file` must hold usable PEM certificates, an
/// `auth_password_file` must be readable.
pub fn parse_file(text: &str, origin: &str, dir: &Path) -> Result<Settings, String> {
    parse_in(text, origin, Some(dir))
}

fn parse_in(text: &str, origin: &str, dir: Option<&Path>) -> Result<Settings, String> {
    let file: FileYaml = serde_saphyr::from_str(text).map_err(|e| yaml_error(origin, &e))?;
    let cx = Ctx { origin, dir };
    if let Some(t) = file.templates.first() {
        return Err(cx.at(t, "templates: Go templates are not supported; remove the entry (notifications use built-in titles and texts)"));
    }
    let g = &file.global;
    let resolve_timeout = match &g.resolve_timeout {
        None => Duration::from_secs(300),
        Some(s) => dur(&cx, s, "global.resolve_timeout")?,
    };
    if let Some(u) = &g.slack_api_url {
        check_url(&cx, u, "global.slack_api_url")?;
    }
    if let Some(h) = &g.smtp_smarthost {
        check_smarthost(&cx, h, "global.smtp_smarthost")?;
    }
    let mut receivers = Vec::new();
    let mut names = BTreeSet::new();
    for r in &file.receivers {
        receivers.push(receiver(&cx, g, r)?);
        if !names.insert(r.name.value.clone()) {
            return Err(cx.at(&r.name, format!("receivers: {:?} is defined twice", r.name.value)));
        }
    }
    let Some(root) = &file.route else {
        return Err(format!("{origin}: no `route:` section (the root route is required)"));
    };
    if root.value.receiver.is_none() {
        return Err(cx.at(root, "route: the root route must name a receiver"));
    }
    if !root.value.matchers.is_empty()
        || !root.value.match_eq.is_empty()
        || !root.value.match_re.is_empty()
    {
        return Err(
            cx.at(root, "route: the root route must not have matchers (it takes every alert)")
        );
    }
    if root.value.continue_matching {
        return Err(cx.at(root, "route: the root route cannot have `continue`"));
    }
    let route = route(&cx, root, &names)?;
    let inhibit_rules =
        file.inhibit_rules.iter().map(|r| inhibit(&cx, r)).collect::<Result<Vec<_>, _>>()?;
    Ok(Settings { resolve_timeout, route, receivers, inhibit_rules })
}

/// `file: line L, column C: message`, from serde-saphyr's error.
fn yaml_error(origin: &str, e: &serde_saphyr::Error) -> String {
    let mut options = serde_saphyr::RenderOptions::default();
    options.snippets = serde_saphyr::SnippetMode::Off;
    let msg = e.render_with_options(options);
    let msg = msg.trim();
    match e.location() {
        Some(l) => {
            let at = format!(" at line {}, column {}", l.line(), l.column());
            let msg = msg.strip_suffix(at.as_str()).unwrap_or(msg);
            format!("{origin}: line {}, column {}: {msg}", l.line(), l.column())
        }
        None => format!("{origin}: {msg}"),
    }
}

fn dur(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<Duration, String> {
    duration(&s.value).ok_or_else(|| {
        cx.at(s, format!("{field}: invalid duration {:?} (use e.g. 30s, 5m, 1h30m)", s.value))
    })
}

fn check_url(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<(), String> {
    ocelli_http::client::Url::parse(&s.value)
        .map(|_| ())
        .map_err(|e| cx.at(s, format!("{field}: {e}")))
}

fn check_smarthost(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<(), String> {
    let ok = s
        .value
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok { Ok(()) } else { Err(cx.at(s, format!("{field}: {:?} is not host:port", s.value))) }
}

fn no_template(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<String, String> {
    if s.value.contains("{{") {
        return Err(cx.at(
            s,
            format!("{field}: Go templates are not supported; give fixed text or leave the field out for the built-in one"),
        ));
    }
    Ok(s.value.clone())
}

fn receiver(cx: &Ctx<'_>, g: &GlobalYaml, r: &ReceiverYaml) -> Result<Receiver, String> {
    let name = &r.name.value;
    if name.is_empty() {
        return Err(cx.at(&r.name, "receivers: a receiver's name must not be empty"));
    }
    let at = |kind: &str, i: usize| format!("receiver {name:?}: {kind}[{i}]");
    let mut out = Receiver { name: name.clone(), ..Receiver::default() };
    for (i, s) in r.slack_configs.iter().enumerate() {
        let c = &s.value;
        let api_url = match (&c.api_url, &g.slack_api_url) {
            (Some(u), _) | (None, Some(u)) => {
                check_url(cx, u, &format!("{}.api_url", at("slack_configs", i)))?;
                u.value.clone()
            }
            (None, None) => {
                return Err(cx.at(
                    s,
                    format!("{}: no api_url and no global.slack_api_url", at("slack_configs", i)),
                ));
            }
        };
        let text = |f: &Option<Spanned<String>>, field: &str| {
            f.as_ref()
                .map(|t| no_template(cx, t, &format!("{}.{field}", at("slack_configs", i))))
                .transpose()
        };
        out.slack.push(SlackConfig {
            api_url,
            channel: c.channel.clone(),
            username: c.username.clone().unwrap_or_else(|| "Alertmanager".into()),
            title: text(&c.title, "title")?,
            text: text(&c.text, "text")?,
            send_resolved: c.send_resolved,
        });
    }
    for (i, s) in r.email_configs.iter().enumerate() {
        let c = &s.value;
        let here = at("email_configs", i);
        if c.to.value.trim().is_empty() {
            return Err(cx.at(&c.to, format!("{here}.to: must not be empty")));
        }
        let smarthost = match (&c.smarthost, &g.smtp_smarthost) {
            (Some(h), _) | (None, Some(h)) => {
                check_smarthost(cx, h, &format!("{here}.smarthost"))?;
                h.value.clone()
            }
            (None, None) => {
                return Err(cx.at(s, format!("{here}: no smarthost and no global.smtp_smarthost")));
            }
        };
        let Some(from) = c.from.clone().or_else(|| g.smtp_from.clone()) else {
            return Err(cx.at(s, format!("{here}: no from and no global.smtp_from")));
        };
        let mut headers = BTreeMap::new();
        for (k, v) in &c.headers {
            let canonical = canonical_header(k);
            if matches!(canonical.as_str(), "To" | "From") {
                return Err(cx.at(
                    v,
                    format!(
                        "{here}.headers: set {canonical} with the `{}` field",
                        canonical.to_lowercase()
                    ),
                ));
            }
            headers.insert(canonical, no_template(cx, v, &format!("{here}.headers.{k}"))?);
        }
        let auth_password_file = match &c.auth_password_file {
            Some(f) if c.auth_password.is_some() => {
                return Err(
                    cx.at(f, format!("{here}: give auth_password or auth_password_file, not both"))
                );
            }
            Some(f) => Some(file(cx, f, &format!("{here}.auth_password_file"), |p| {
                std::fs::File::open(p).map(|_| ()).map_err(|e| format!("cannot read it: {e}"))
            })?),
            None => None,
        };
        let t = &c.tls_config;
        let ca_file = t
            .ca_file
            .as_ref()
            .map(|f| {
                file(cx, f, &format!("{here}.tls_config.ca_file"), |p| {
                    super::email::ca_certificates(p).map(|_| ())
                })
            })
            .transpose()?;
        if let Some(n) = t.server_name.as_ref().filter(|n| n.value.trim().is_empty()) {
            return Err(cx.at(n, format!("{here}.tls_config.server_name: must not be empty")));
        }
        out.email.push(EmailConfig {
            to: c.to.value.clone(),
            from,
            smarthost,
            auth_username: c.auth_username.clone().or_else(|| g.smtp_auth_username.clone()),
            auth_password: c.auth_password.clone().or_else(|| {
                auth_password_file.is_none().then(|| g.smtp_auth_password.clone()).flatten()
            }),
            auth_password_file,
            require_tls: c.require_tls.or(g.smtp_require_tls).unwrap_or(true),
            tls: TlsConfig {
                ca_file,
                server_name: t.server_name.as_ref().map(|n| n.value.clone()),
                insecure_skip_verify: t.insecure_skip_verify,
            },
            headers,
            send_resolved: c.send_resolved,
        });
    }
    for (i, s) in r.webhook_configs.iter().enumerate() {
        let c = &s.value;
        check_url(cx, &c.url, &format!("{}.url", at("webhook_configs", i)))?;
        out.webhook.push(WebhookConfig {
            url: c.url.value.clone(),
            send_resolved: c.send_resolved,
            max_alerts: c.max_alerts,
        });
    }
    Ok(out)
}

/// A path the YAML names: relative to the YAML's folder, and checked by `check` when the
/// files are to be checked.
fn file(
    cx: &Ctx<'_>,
    s: &Spanned<String>,
    field: &str,
    check: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    if s.value.is_empty() {
        return Err(cx.at(s, format!("{field}: must not be empty")));
    }
    let Some(dir) = cx.dir else { return Ok(PathBuf::from(&s.value)) };
    let path = dir.join(&s.value);
    check(&path).map_err(|e| cx.at(s, format!("{field}: {}: {e}", path.display())))?;
    Ok(path)
}

/// `content-type` -> `Content-Type`.
fn canonical_header(k: &str) -> String {
    k.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn matcher_list(
    cx: &Ctx<'_>,
    field: &str,
    strings: &[Spanned<String>],
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, Spanned<String>>,
    near: &dyn Fn(String) -> String,
) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for s in strings {
        out.extend(matchers::parse(&s.value).map_err(|e| cx.at(s, format!("{field}: {e}")))?);
    }
    for (k, v) in eq {
        if !ocelli_model::is_valid_label_name(k) {
            return Err(near(format!("{k:?} is not a valid label name")));
        }
        out.push(Matcher::equal(k.clone(), v.clone()));
    }
    for (k, v) in re {
        if !ocelli_model::is_valid_label_name(k) {
            return Err(cx.at(v, format!("{k:?} is not a valid label name")));
        }
        out.push(
            Matcher::new(MatchOp::RegexMatch, k.clone(), v.value.clone())
                .map_err(|e| cx.at(v, format!("{field}: {e}")))?,
        );
    }
    Ok(out)
}

fn route(
    cx: &Ctx<'_>,
    r: &Spanned<RouteYaml>,
    receivers: &BTreeSet<String>,
) -> Result<Route, String> {
    let y = &r.value;
    if let Some(name) = &y.receiver
        && !receivers.contains(&name.value)
    {
        return Err(
            cx.at(name, format!("route.receiver: {:?} is not defined in receivers", name.value))
        );
    }
    let group_by = match &y.group_by {
        None => None,
        Some(g) if g.value.iter().any(|n| n == "...") => {
            if g.value.len() > 1 {
                return Err(cx.at(
                    g,
                    "route.group_by: '...' must be the only entry (it groups by all labels)",
                ));
            }
            Some(GroupBy::All)
        }
        Some(g) => {
            let mut seen = BTreeSet::new();
            for n in &g.value {
                if !ocelli_model::is_valid_label_name(n) {
                    return Err(
                        cx.at(g, format!("route.group_by: {n:?} is not a valid label name"))
                    );
                }
                if !seen.insert(n) {
                    return Err(cx.at(g, format!("route.group_by: {n:?} is listed twice")));
                }
            }
            Some(GroupBy::Labels(g.value.clone()))
        }
    };
    let d = |f: &Option<Spanned<String>>, field: &str| {
        f.as_ref().map(|s| dur(cx, s, field)).transpose()
    };
    let group_interval = d(&y.group_interval, "route.group_interval")?;
    let repeat_interval = d(&y.repeat_interval, "route.repeat_interval")?;
    for (v, f) in [(&group_interval, &y.group_interval), (&repeat_interval, &y.repeat_interval)] {
        if let (Some(v), Some(f)) = (v, f)
            && v.is_zero()
        {
            return Err(cx.at(f, "route: group_interval and repeat_interval must be above zero"));
        }
    }
    let near = |m: String| cx.at(r, format!("route.match: {m}"));
    Ok(Route {
        receiver: y.receiver.as_ref().map(|s| s.value.clone()),
        group_by,
        group_wait: d(&y.group_wait, "route.group_wait")?,
        group_interval,
        repeat_interval,
        matchers: matcher_list(cx, "route.matchers", &y.matchers, &y.match_eq, &y.match_re, &near)?,
        continue_matching: y.continue_matching,
        routes: y.routes.iter().map(|c| route(cx, c, receivers)).collect::<Result<_, _>>()?,
    })
}

fn inhibit(cx: &Ctx<'_>, r: &InhibitYaml) -> Result<InhibitRule, String> {
    let near = |m: String| format!("{}: inhibit_rules: {m}", cx.origin);
    let source_matchers = matcher_list(
        cx,
        "inhibit_rules.source_matchers",
        &r.source_matchers,
        &r.source_match,
        &r.source_match_re,
        &near,
    )?;
    let target_matchers = matcher_list(
        cx,
        "inhibit_rules.target_matchers",
        &r.target_matchers,
        &r.target_match,
        &r.target_match_re,
        &near,
    )?;
    if let Some(n) = r.equal.iter().find(|n| !ocelli_model::is_valid_label_name(n)) {
        return Err(near(format!("equal: {n:?} is not a valid label name")));
    }
    Ok(InhibitRule { source_matchers, target_matchers, equal: r.equal.clone() })
}

#[cfg(test)]
mod tests;
