//! The daemon under test: in this process (`byocd::app::run`, the code `byocd serve` runs), or
//! the release binary as a child process (for resident memory and start-up time).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use byocd::sandbox::stack::{Stack, StackOptions};

/// Session settings for the benchmarks: nothing goes idle during a run (sweeps are timed on
/// their own), the sweeper still runs every minute.
pub const BENCH_SESSION: &str =
    "inactivate_after = \"12h\"\nend_after = \"24h\"\nsweep_cron = \"0 * * * * *\"\n";

/// The emulators and a configuration pointing at them.
pub async fn stack(root: &Path, database_url: &str, extra_main: &str) -> anyhow::Result<Stack> {
    let mut options = StackOptions::new(root);
    options.database_url = database_url.to_owned();
    options.extra_main = extra_main.to_owned();
    options.session = BENCH_SESSION.to_owned();
    Stack::start(&options)
        .await
        .with_context(|| format!("starting the sandbox stack in {}", root.display()))
}

/// Waits until `GET /readyz` answers 200.
pub async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the daemon on {addr} was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `byocd::app::run` on its own listener, in this process.
pub struct InProcess {
    pub stack: Stack,
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), byocd::app::RunError>>,
}

impl InProcess {
    pub async fn start(root: &Path, database_url: &str, extra_main: &str) -> anyhow::Result<Self> {
        let stack = stack(root, database_url, extra_main).await?;
        let config = byocd::config::load(&stack.config_file).map_err(|e| anyhow!("{e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(byocd::app::run(
            config,
            listener,
            byocd::app::Control::stop_on(async move {
                let _ = stopped.await;
            }),
        ));
        wait_ready(addr, Duration::from_secs(30)).await?;
        Ok(Self {
            stack,
            addr,
            stop,
            task,
        })
    }

    /// Stops the daemon (its shutdown grace is 5 s) and the emulators.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(20), self.task).await {
            Ok(Ok(Err(e))) => eprintln!("byocd-bench: the daemon stopped with an error: {e}"),
            Ok(Err(e)) => eprintln!("byocd-bench: the daemon task failed: {e}"),
            Err(_) => eprintln!("byocd-bench: the daemon did not stop within 20 s"),
            Ok(Ok(Ok(()))) => {}
        }
        self.stack.shutdown().await;
    }
}

/// A free port on loopback (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The release binary running `serve`, its output drained by threads.
pub struct ChildDaemon {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// When the "byocd ready" line was read.
    ready: Arc<Mutex<Option<Instant>>>,
    /// The last lines of output, for error messages.
    tail: Arc<Mutex<Vec<String>>>,
}

impl ChildDaemon {
    /// Starts `bin --config config serve` listening on a free port.
    pub fn spawn(bin: &Path, config: &Path) -> anyhow::Result<(Self, Instant)> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env_remove("BYOCD_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("BYOCD__SERVER__LISTEN", addr.to_string())
            .env("BYOCD__SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .env("BYOCD__LOG__FORMAT", "plain")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let ready = Arc::new(Mutex::new(None));
        let tail = Arc::new(Mutex::new(Vec::new()));
        let drain = |stream: Box<dyn std::io::Read + Send>| {
            let ready = ready.clone();
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("byocd ready") {
                        let mut r = ready.lock().expect("ready lock");
                        if r.is_none() {
                            *r = Some(Instant::now());
                        }
                    }
                    let mut t = tail.lock().expect("tail lock");
                    t.push(line);
                    if t.len() > 40 {
                        t.remove(0);
                    }
                }
            });
        };
        if let Some(out) = child.stdout.take() {
            drain(Box::new(out));
        }
        if let Some(err) = child.stderr.take() {
            drain(Box::new(err));
        }
        let pid = child.id();
        Ok((
            Self {
                child,
                pid,
                addr,
                ready,
                tail,
            },
            started,
        ))
    }

    /// When the ready line was printed, if it was.
    pub fn ready_at(&self) -> Option<Instant> {
        *self.ready.lock().expect("ready lock")
    }

    /// Waits for the ready line.
    pub async fn wait_ready_line(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.ready_at() {
                return Ok(at);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "byocd serve exited ({status}) before it was ready:\n{}",
                    self.tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "byocd serve was not ready within {timeout:?}:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn tail(&self) -> String {
        self.tail.lock().expect("tail lock").join("\n")
    }

    /// SIGTERM by PID, then waits (at most `grace`, then SIGKILL). Returns how long it took.
    pub async fn stop(mut self, grace: Duration) -> Duration {
        let t = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t.elapsed();
            }
            if t.elapsed() > grace {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return t.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The release binary next to this one, or `target/release/byocd`.
pub fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("byocd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("target/release/byocd"))
}

/// The release binary serving a stack's configuration: the daemon of the end-to-end parts that
/// charge CPU to their messages (its own process, apart from the load generator and the
/// emulators in this one).
pub struct Served {
    pub stack: Stack,
    pub child: ChildDaemon,
}

impl Served {
    /// Spawns `bin serve` on `stack`'s configuration and waits until it is ready.
    pub async fn spawn(bin: &Path, stack: Stack) -> anyhow::Result<Self> {
        let (mut child, _) = match ChildDaemon::spawn(bin, &stack.config_file) {
            Ok(c) => c,
            Err(e) => {
                stack.shutdown().await;
                return Err(e);
            }
        };
        let ready = async {
            child.wait_ready_line(Duration::from_secs(60)).await?;
            wait_ready(child.addr, Duration::from_secs(30)).await
        }
        .await;
        if let Err(e) = ready {
            child.stop(Duration::from_secs(15)).await;
            stack.shutdown().await;
            return Err(e);
        }
        Ok(Self { stack, child })
    }

    pub fn addr(&self) -> SocketAddr {
        self.child.addr
    }

    /// Stops the daemon (SIGTERM, SIGKILL after 15 s) and the emulators.
    pub async fn stop(self) {
        self.child.stop(Duration::from_secs(15)).await;
        self.stack.shutdown().await;
    }
}
