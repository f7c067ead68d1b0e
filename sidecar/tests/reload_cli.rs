//! Reloads (file change, SIGHUP) and the command line, exercised on the real binary.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

async fn served_version(url: &str) -> Option<String> {
    let r: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    r["models"][0]["version"].as_str().map(String::from)
}

async fn wait_for_version(url: &str, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if served_version(url).await.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_changed_bundle_on_disk_is_reloaded_by_the_watcher() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    let app =
        TestApp::spawn(&config_for(&[tmp.path()], "").replace("watch = false", "watch = true"))
            .await;
    let url = app.url("/_vigil/models");
    assert_eq!(served_version(&url).await.as_deref(), Some("1.0.0"));
    edit_json(&dir.join("manifest.json"), |m| {
        m["version"] = "2.0.0".into()
    });
    assert!(
        wait_for_version(&url, "2.0.0").await,
        "the watcher reloaded the new version"
    );
}

#[tokio::test]
async fn sighup_reloads_the_models_of_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("vigil.toml");
    std::fs::write(
        &config,
        config_for(&[tmp.path()], "").replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let mut child = Command::new(VIGIL)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/_vigil/models");
    let started = wait_for_version(&url, "1.0.0").await;
    edit_json(&dir.join("manifest.json"), |m| {
        m["version"] = "3.0.0".into()
    });
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let reloaded = wait_for_version(&url, "3.0.0").await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(
        started && status.success() && reloaded,
        "started {started}, reloaded {reloaded}"
    );
    assert!(exit.success(), "SIGTERM is a clean shutdown: {exit:?}");
}

#[test]
fn score_command_enriches_ndjson_and_reports_bad_lines_in_place() {
    let input =
        "{\"features\":{\"f0\":1}}\n{broken\n\n{\"features\":{\"f0\":\"x\"}}\n{\"features\":{}}\n";
    let mut child = Command::new(VIGIL)
        .args(["score", "--model", "logreg_binary", "--models"])
        .arg(bundles_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0]["ml"]["inference"]["logreg_binary"]["score"].is_f64());
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"]["type"], "x_content_parse_exception");
    assert_eq!(lines[2]["line"], 4);
    assert_eq!(lines[2]["error"]["type"], "feature_extraction_exception");
    assert!(lines[3]["ml"]["inference"]["logreg_binary"].is_object());
    assert_eq!(out.status.code(), Some(1), "some documents failed");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("scored 2 of 4 documents"), "{stderr}");
}

#[test]
fn models_check_names_refused_bundles_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    let ok = Command::new(VIGIL)
        .args(["models", "check"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok       logreg_binary 1.0.0"));
    edit_json(&dir.join("manifest.json"), |m| {
        m["model"]["sha256"] = "ab".into()
    });
    let bad = Command::new(VIGIL)
        .args(["models", "check"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("SHA-256 mismatch"));
}

#[test]
fn an_invalid_configuration_exits_before_binding_and_names_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"0.0.0.0:1\"\nmax_batch_docs = 0\n[scoring]\nexplain = \"often\"\n",
    )
    .unwrap();
    let out = Command::new(VIGIL)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "max_batch_docs",
        "scoring.explain [often]",
        "requires caller tokens",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
    let check = Command::new(VIGIL)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let fine = Command::new(VIGIL).arg("check-config").output().unwrap();
    assert!(fine.status.success(), "the embedded defaults are valid");
}
