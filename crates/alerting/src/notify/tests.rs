//! Tests of the notifier's handle that need no network: config paths and the start-up checks.

use super::*;

#[test]
fn relative_yaml_paths_follow_the_server_config_file() {
    let c = NotifierConfig { config_file: Some("am.yml".into()), ..NotifierConfig::default() };
    let listen: std::net::SocketAddr = "127.0.0.1:9747".parse().unwrap();
    let r = c.resolved(Some(Path::new("/etc/ocelli")), listen);
    assert_eq!(r.config_file.as_deref(), Some(Path::new("/etc/ocelli/am.yml")));
    assert_eq!(r.external_url, "http://127.0.0.1:9747");
    let abs = NotifierConfig {
        config_file: Some("/srv/am.yml".into()),
        external_url: "https://alerts.example.org".into(),
        ..NotifierConfig::default()
    };
    let r = abs.resolved(Some(Path::new("/etc/ocelli")), listen);
    assert_eq!(r.config_file.as_deref(), Some(Path::new("/srv/am.yml")));
    assert_eq!(r.external_url, "https://alerts.example.org");
}

#[tokio::test]
async fn a_broken_file_fails_the_start_with_its_line_and_a_missing_one_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("am.yml");
    std::fs::write(&yml, "route:\n  receiver: x\n").unwrap();
    let c = NotifierConfig { config_file: Some(yml.clone()), ..NotifierConfig::default() };
    let h: Arc<dyn HistorySink> = Arc::new(crate::MemoryHistory::default());
    let e = Notifier::start(&c, h.clone(), dir.path()).await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "config notifier: {}: line 2, column 13: route.receiver: \"x\" is not defined in receivers",
            yml.display()
        )
    );
    let c = NotifierConfig {
        config_file: Some(dir.path().join("nope.yml")),
        ..NotifierConfig::default()
    };
    let e = Notifier::start(&c, h, dir.path()).await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("config {}: ", dir.path().join("nope.yml").display())), "{e}");
}
