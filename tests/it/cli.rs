//! The real `byocd` binary, as an operator runs it.

use crate::support;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_byocd");

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/byocd.toml")
}

/// `byocd` with the shipped configuration, its state in `state_dir`, and extra environment.
fn byocd(state_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(shipped_config())
        .env_remove("BYOCD_CONFIG")
        .env("BYOCD__STATE_DIR", state_dir)
        .env("BYOCD__SERVER__LISTEN", "127.0.0.1:0")
        .env("BYOCD__SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("BYOCD__SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("BYOCD__LOG__FORMAT", "plain")
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_lists_the_commands_and_version_prints() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out);
    for command in [
        "serve",
        "migrate",
        "config",
        "keygen",
        "outbox",
        "quarantine",
        "channels",
        "sessions",
        "audit",
        "token",
        "explain",
    ] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
    let out = Command::new(BIN)
        .args(["config", "--help"])
        .output()
        .unwrap();
    assert!(text(&out).contains("check"));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out).contains(env!("CARGO_PKG_VERSION")));
}

/// `byocd demo` is listed only in a build with the emulators (the `sandbox` feature, on by
/// default); a production build (`--no-default-features`) does not list it, and asking for it
/// names the feature and exits 2, as an unknown command does.
#[test]
fn demo_is_listed_only_with_the_sandbox_feature() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let listed = text(&out)
        .lines()
        .any(|l| l.trim_start().starts_with("demo "));
    assert_eq!(listed, cfg!(feature = "sandbox"), "{}", text(&out));
    if !cfg!(feature = "sandbox") {
        let out = Command::new(BIN)
            .args(["demo", "--keep-running"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).contains("`sandbox` feature"), "{}", text(&out));
    }
}

#[test]
fn the_shipped_configuration_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = byocd(dir.path(), &[])
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK"), "{}", text(&out));
}

#[test]
fn config_check_fails_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("byocd.toml");
    std::fs::write(
        &main,
        "[server]\nlisten = \"127.0.0.1:8080\"\nlisten_port = 1\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&main)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report = text(&out);
    assert!(report.contains("server.listen_port"), "{report}");
}

#[test]
fn config_check_names_a_missing_webhook_secret_and_warns_about_none() {
    use support::channels::{ConfigDir, Endpoints, RCS_CHANNEL};
    let config = ConfigDir::write(&Endpoints::default(), "", "");
    let rcs = config
        .dir
        .path()
        .join("channels.d")
        .join(format!("{RCS_CHANNEL}.toml"));
    let without = std::fs::read_to_string(&rcs).unwrap().replace(
        "webhook_authorization_file = \"secrets/kaleyra-webhook.auth\"",
        "",
    );
    std::fs::write(&rcs, &without).unwrap();
    let check = || {
        Command::new(BIN)
            .arg("--config")
            .arg(&config.main_file)
            .env_remove("BYOCD_CONFIG")
            .args(["config", "check"])
            .output()
            .unwrap()
    };
    // Upgrading a Kaleyra channel that had no secret: refused, with the way out.
    let out = check();
    assert!(!out.status.success());
    let report = text(&out);
    assert!(
        report.contains(&format!(
            "channels.d/{RCS_CHANNEL}.toml:provider.webhook_authorization_file: missing required key"
        )) && report.contains("webhook_authentication = \"none\""),
        "{report}"
    );
    // Saying explicitly that a proxy authenticates: accepted, with a warning.
    std::fs::write(
        &rcs,
        format!("{without}\nwebhook_authentication = \"none\"\n"),
    )
    .unwrap();
    let out = check();
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "channels.d/{RCS_CHANNEL}.toml:provider.webhook_authentication: warning: \"none\""
        )),
        "{report}"
    );
}

#[test]
fn migrate_creates_the_sqlite_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = byocd(dir.path(), &[]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applied migration 1"), "{}", text(&out));
    assert!(dir.path().join("byocd.db").exists());

    let out = byocd(dir.path(), &[]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
}

/// `sqlite://PATH`: `migrate` creates the file and every missing directory above it; admin
/// commands create nothing and say where the database is missing.
#[test]
fn sqlite_url_directories_are_created_by_migrate_and_never_by_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not/yet/there.db");
    let url = format!("sqlite://{}", missing.display());
    let env = [("BYOCD__DATABASE__URL", url.as_str())];
    for args in [
        &["sessions", "list"][..],
        &["quarantine", "list"],
        &["outbox", "retry", "1"],
    ] {
        let out = byocd(dir.path(), &env).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "no SQLite database at {}: `byocd migrate` or starting the daemon creates it",
                missing.display()
            )),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(
        !dir.path().join("not").exists(),
        "an admin command created something"
    );
    // The parent exists, the file does not: still nothing created.
    std::fs::create_dir_all(missing.parent().unwrap()).unwrap();
    let out = byocd(dir.path(), &env)
        .args(["outbox", "retry", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!missing.exists(), "outbox retry created an empty database");
    std::fs::remove_dir_all(dir.path().join("not")).unwrap();

    let out = byocd(dir.path(), &env).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(missing.is_file());
    assert!(dir.path().join("not/yet/there.db.lock").is_file());
    let out = byocd(dir.path(), &env)
        .args(["sessions", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no sessions\n");

    // A parent that is a file cannot be created: the error names it.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let url = format!("sqlite://{}", blocked.join("byocd.db").display());
    let out = byocd(dir.path(), &[("BYOCD__DATABASE__URL", url.as_str())])
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("cannot create {}: File exists", blocked.display())),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn migrate_creates_the_postgres_schema_once() {
    let db = support::TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("BYOCD__DATABASE__URL", db.url.as_str())];
    let out = byocd(dir.path(), &env).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applied migration 1"), "{}", text(&out));
    let out = byocd(dir.path(), &env).arg("migrate").output().unwrap();
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert!(
        !dir.path().join("byocd.db").exists(),
        "no SQLite file when on PostgreSQL"
    );
}

#[test]
fn keygen_writes_a_private_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    byocd::crypto::TokenKey::from_file(&path).unwrap();
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "keygen overwrote a key");
}

/// A running `byocd serve`, killed on drop.
struct Daemon {
    child: Child,
    addr: String,
    metrics: String,
    /// Keeps the log readers' channel open for the daemon's life.
    _output: std::sync::mpsc::Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `byocd serve` and waits (up to 60 s) for its "ready" log line with the bound address.
fn start_daemon(state_dir: &Path) -> Daemon {
    let spawned = byocd(state_dir, &[])
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let (tx, rx) = std::sync::mpsc::channel();
    // From here on the guard kills and reaps the process whatever happens.
    let mut daemon = Daemon {
        child: spawned.unwrap(),
        addr: String::new(),
        metrics: String::new(),
        _output: rx,
    };
    for stream in [
        Box::new(daemon.child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(daemon.child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match daemon._output.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if line.contains("byocd ready") {
                    daemon.addr = line
                        .split("listen=")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .expect("ready line names the address")
                        .to_owned();
                    daemon.metrics = line
                        .split("metrics=")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .expect("ready line names the metrics address")
                        .to_owned();
                    return daemon;
                }
                seen.push(line);
            }
            Err(_) => {
                if let Some(status) = daemon.child.try_wait().unwrap() {
                    panic!("byocd exited with {status}:\n{}", seen.join("\n"));
                }
            }
        }
    }
    panic!("byocd not ready within 60 s:\n{}", seen.join("\n"));
}

#[tokio::test]
async fn serve_answers_health_and_readiness_and_a_second_daemon_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let daemon = start_daemon(dir.path());
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{}/healthz", daemon.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = client
        .get(format!("http://{}/readyz", daemon.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "sqlite");
    assert_eq!(body["schema"]["applied"], body["schema"]["expected"]);
    eprintln!("serve: ready and answering after {:?}", started.elapsed());

    // Metrics on their own listener (this daemon has no channel: the families, no samples).
    let metrics = client
        .get(format!("http://{}/metrics", daemon.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let exposition = metrics.text().await.unwrap();
    assert!(
        exposition.contains("# TYPE byocd_remediation_actions_total counter"),
        "{exposition}"
    );
    assert!(
        exposition.contains("# TYPE byocd_sweep_stale gauge"),
        "{exposition}"
    );
    assert!(
        !exposition.contains("byocd_channel_paused{"),
        "{exposition}"
    );
    assert_ne!(daemon.metrics, daemon.addr);

    // A second daemon on the same state directory (same SQLite file) refuses to start.
    let out = byocd(dir.path(), &[]).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let report = text(&out);
    assert!(
        report.contains("another byocd is already using"),
        "{report}"
    );
    assert!(report.contains("byocd.db"), "{report}");
}

/// `byocd migrate --database-url` migrates a database the configuration does not name;
/// `byocd audit verify` says OK with its counts and the head `byocd audit head` prints, then
/// names a row changed behind byocd's back and exits 1; a malformed `--expect-head` is refused.
#[test]
fn audit_verify_and_head_as_an_auditor_runs_them() {
    use byocd::store::{AnyStore, AuditEntry, Store, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audited.db").display());
    let out = byocd(dir.path(), &[])
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applied migration 4"), "{}", text(&out));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = AnyStore::open(&url, StoreOptions::default()).await.unwrap();
        for n in 1..=3 {
            store
                .append_audit(&AuditEntry::new("test.row", format!("row {n}")))
                .await
                .unwrap();
        }
        byocd::lifecycle::seal::Sealer::new()
            .round(&store)
            .await
            .unwrap();
        store.close().await;
    });
    let env = [("BYOCD__DATABASE__URL", url.as_str())];

    let out = byocd(dir.path(), &env)
        .args(["audit", "head"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let head = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(head.ends_with("@3") && head.len() == 64 + 2, "{head}");

    let out = byocd(dir.path(), &env)
        .args(["audit", "verify", "--expect-head", &head])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("audit trail OK: 3 rows sealed and verified, 0 not sealed yet"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("head: {head}")),
        "{}",
        text(&out)
    );

    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "DROP TRIGGER audit_log_no_update; \
             UPDATE audit_log SET message = 'nothing happened' WHERE id = 2",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    });
    let out = byocd(dir.path(), &env)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("audit trail BROKEN at row 2: modified"),
        "{}",
        text(&out)
    );

    let out = byocd(dir.path(), &env)
        .args(["audit", "verify", "--expect-head", "abc@3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a SHA-256 hash"), "{}", text(&out));
}
