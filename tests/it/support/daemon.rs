//! The real `byocd serve` binary as a child process: started on a configuration directory and a
//! database, its log in a file, its listen address read from the "byocd ready listen=ADDR" line;
//! killed with SIGKILL or stopped with SIGTERM by its own PID. A dropped daemon is killed.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_byocd");

/// How long a daemon may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts daemons on one configuration and one database, numbering their log files.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The main configuration file.
    pub config: PathBuf,
    /// `database.url`.
    pub database_url: String,
    /// Where the log files go.
    pub log_dir: PathBuf,
    /// Extra environment for every daemon.
    pub env: Vec<(String, String)>,
    /// Daemons started so far.
    pub started: usize,
}

impl Launcher {
    pub fn new(config: &Path, database_url: &str, log_dir: &Path) -> Self {
        Self {
            config: config.to_owned(),
            database_url: database_url.to_owned(),
            log_dir: log_dir.to_owned(),
            env: Vec::new(),
            started: 0,
        }
    }

    /// Adds a variable to every daemon's environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts one more daemon (`HOSTNAME` = `name`, which becomes the first part of its relay's
    /// lease owner) and waits until it is ready.
    pub async fn start(&mut self, name: &str) -> Daemon {
        self.started += 1;
        let log = self.log_dir.join(format!("{:02}-{name}.log", self.started));
        let out = File::create(&log).expect("create the daemon's log file");
        let err = out.try_clone().expect("clone the log file handle");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("BYOCD_CONFIG")
            .env("BYOCD__DATABASE__URL", &self.database_url)
            .env("BYOCD__SERVER__LISTEN", "127.0.0.1:0")
            .env("BYOCD__SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .env("BYOCD__LOG__FORMAT", "plain")
            .env("RUST_LOG", "info")
            .env("HOSTNAME", name)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn byocd serve");
        let mut daemon = Daemon {
            pid: child.id(),
            child: Some(child),
            addr: String::new(),
            log,
            name: name.to_owned(),
        };
        daemon.wait_ready().await;
        daemon
    }
}

/// A running `byocd serve`.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its process id.
    pub pid: u32,
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    /// The name it was started with (its `HOSTNAME`).
    pub name: String,
}

impl Daemon {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("byocd ready")) {
                // Plain: `listen=ADDR`; JSON: `"listen":"ADDR"`.
                self.addr = line
                    .split("listen=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .or_else(|| {
                        line.split("\"listen\":\"")
                            .nth(1)
                            .and_then(|rest| rest.split('"').next())
                    })
                    .unwrap_or_else(|| panic!("the ready line names no address: {line}"))
                    .to_owned();
                return;
            }
            let child = self.child.as_mut().expect("a started daemon has its child");
            if let Some(status) = child.try_wait().expect("poll the daemon") {
                panic!(
                    "byocd {} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "byocd {} not ready within {READY_TIMEOUT:?}:\n{}",
            self.name,
            self.log_tail(60)
        );
    }

    /// SIGKILL, and reaps the process: it has no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a clean shutdown), waiting up to `grace`; then SIGKILL. True if it stopped on its
    /// own and exited successfully.
    pub async fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Sends signal `name` (`HUP`, `TERM`, …) to this daemon, by its PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// The length of its log so far (a mark for [`Daemon::wait_for_log`]).
    pub fn log_len(&self) -> usize {
        std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    /// Waits (30 s at most) until the log after `after` contains `needle`; returns that part.
    pub async fn wait_for_log(&self, needle: &str, after: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.len() > after && text[after..].contains(needle) {
                return text[after..].to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` not logged within 30 s; the log ends:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A small seeded pseudo-random generator (xorshift64*), so a failing run can be repeated with
/// the seed it printed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `var` if set (a decimal number), else at random; returns the seed too.
    pub fn from_env_or_random(var: &str) -> (Self, u64) {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u128() as u64);
        (Self(seed.max(1)), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next_u64() % span)
    }
}

/// Posts webhooks the way a provider does: each one again and again until it is answered 200
/// (connection refused or reset, timeouts and 5xx are retried; 8x8 retries even 4xx, but here a
/// 4xx means the test is wrong, so it fails at once). Clones share the counters.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// Failed attempts (each one retried).
    pub retries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Webhooks answered 200 (see [`WebhookSender::accepted`], [`WebhookSender::wait_accepted`]).
    accepted: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

/// Attempts per webhook before giving up (besides the deadline).
const MAX_ATTEMPTS: usize = 5_000;

impl WebhookSender {
    /// A sender with at most `in_flight` requests open at once.
    pub fn new(in_flight: usize) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client"),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight)),
            retries: Default::default(),
            accepted: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Webhooks answered 200 so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Waits until at least `n` webhooks were answered 200 (fails at `deadline`); how many were
    /// then.
    pub async fn wait_accepted(&self, n: usize, deadline: Instant) -> usize {
        let mut accepted = self.accepted.subscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, accepted.wait_for(|a| *a >= n)).await {
            Ok(done) => *done.expect("the sender holds the channel"),
            Err(_) => panic!(
                "only {} of {n} webhooks answered 200 by the deadline",
                self.accepted()
            ),
        }
    }

    /// Posts `body` to `{base()}{path}` until answered 200; `base` is asked again before each
    /// attempt (the daemon may have moved to a new port). Returns the answer's body.
    pub async fn post_until_accepted(
        &self,
        base: impl Fn() -> String,
        path: &str,
        authorization: &str,
        body: &serde_json::Value,
        deadline: Instant,
    ) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let mut backoff = Duration::from_millis(20);
        let mut last = String::new();
        for _ in 0..MAX_ATTEMPTS {
            assert!(
                Instant::now() < deadline,
                "a webhook was still not accepted at the deadline (last: {last}): {body}"
            );
            let answer = {
                let _permit = self.permits.acquire().await.expect("never closed");
                match self
                    .client
                    .post(format!("{}{path}", base()))
                    .header("Authorization", authorization)
                    .json(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status();
                        Ok((status, response.json::<serde_json::Value>().await))
                    }
                    Err(e) => Err(e),
                }
            };
            match answer {
                Ok((status, Ok(json))) if status == 200 => {
                    self.accepted.send_modify(|a| *a += 1);
                    return json;
                }
                Ok((status, _)) if status.is_client_error() && status != 408 && status != 429 => {
                    panic!("webhook refused with {status}: {body}")
                }
                Ok((status, json)) => last = format!("HTTP {status} {json:?}"),
                Err(e) => last = e.to_string(),
            }
            self.retries.fetch_add(1, Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
        panic!("a webhook was not accepted after {MAX_ATTEMPTS} attempts (last: {last}): {body}")
    }
}
