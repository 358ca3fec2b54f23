//! Load generators: closed-loop keep-alive HTTP/1.1 clients posting 8x8 webhooks, and the bare
//! axum handler that is the ceiling they are compared with.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use byocd::sandbox::{
    eightbyeight::{EightByEightChannel, EightByEightWebhooks, WebhookUser},
    stack::{WA_CHANNEL, WA_SUB_ACCOUNT, WA_WEBHOOK_AUTH},
};

use crate::stats::{CpuStamp, CpuUse, Hist, ProcUse, Summary, Watch};

/// Builds valid 8x8 WhatsApp inbound text webhooks, each from its own end user.
#[derive(Clone)]
pub struct Bodies {
    builder: EightByEightWebhooks,
    /// Three digits that keep the end users of one run apart from every other run's.
    prefix: u32,
}

impl Bodies {
    pub fn new(prefix: u32) -> Self {
        Self {
            builder: EightByEightWebhooks::new(WA_SUB_ACCOUNT, EightByEightChannel::Whatsapp),
            prefix,
        }
    }

    /// The end user of request `i`: `+1PPPNNNNNNN`.
    pub fn msisdn(&self, i: u64) -> String {
        format!("+1{:03}{:07}", self.prefix % 1000, i % 10_000_000)
    }

    /// The webhook of request `i` from end user `user`, saying `text`.
    pub fn body(&self, user: u64, text: &str) -> Vec<u8> {
        self.builder
            .inbound_text(&WebhookUser::phone(&self.msisdn(user)), text)
            .to_bytes()
    }
}

/// The URL a channel's webhooks go to on a daemon at `addr`.
pub fn webhook_url(addr: SocketAddr) -> String {
    format!("http://{addr}/webhooks/{WA_CHANNEL}")
}

/// A keep-alive HTTP/1.1 client.
pub fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client with these settings always builds")
}

/// POSTs one webhook; the status, or 0 when the request failed.
pub async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> u16 {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::AUTHORIZATION, WA_WEBHOOK_AUTH)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the answer to the end so the connection goes back to the pool.
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

/// A closed-loop run: `clients` connections, each sending its next request when the previous
/// one is answered.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    pub url: String,
    pub clients: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Hard cap on requests (the run also ends at `warmup + measure`).
    pub max_requests: u64,
    pub prefix: u32,
    /// Request `i` comes from end user `i % users` (so after the first round each message joins
    /// a conversation already open); `None`: every request from a new end user.
    pub users: Option<u64>,
    /// Processes whose CPU is read at the start and end of the measurement window.
    pub watch: Option<Watch>,
}

/// What a run measured (requests that started inside the measurement window).
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub window: Duration,
    pub rps: f64,
    pub latency: Summary,
    pub cpu: CpuUse,
    /// The measurement window (after the warm-up).
    pub window_start: Instant,
    pub window_end: Instant,
    /// What the watched processes spent during the window.
    pub procs: Option<ProcUse>,
}

pub async fn closed_loop(spec: &ClosedLoop) -> LoadResult {
    let bodies = Bodies::new(spec.prefix);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warm_end = start + spec.warmup;
    let end = warm_end + spec.measure;
    let watch = spec.watch;
    let cpu_task = tokio::spawn(async move {
        tokio::time::sleep_until(warm_end.into()).await;
        let a = CpuStamp::now();
        let pa = watch.map(|w| w.stamp());
        tokio::time::sleep_until(end.into()).await;
        let pb = watch.map(|w| w.stamp());
        let cpu = a.until(&CpuStamp::now());
        (cpu, pa.zip(pb).map(|(a, b)| a.until(&b)))
    });
    let mut tasks = Vec::new();
    for _ in 0..spec.clients {
        let url = spec.url.clone();
        let bodies = bodies.clone();
        let counter = counter.clone();
        let max = spec.max_requests;
        let users = spec.users;
        tasks.push(tokio::spawn(async move {
            let client = client(1);
            let mut hist = Hist::default();
            let (mut ok, mut errors) = (0_u64, 0_u64);
            loop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= max || Instant::now() >= end {
                    break;
                }
                let user = users.map_or(i, |u| i % u.max(1));
                let body = bodies.body(user, &format!("accept-{i}"));
                let t = Instant::now();
                let status = post(&client, &url, body).await;
                if t >= warm_end && t < end {
                    if status == 200 {
                        ok += 1;
                        hist.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (hist, ok, errors)
        }));
    }
    let mut hist = Hist::default();
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        if let Ok((h, o, e)) = task.await {
            hist.merge(h);
            ok += o;
            errors += e;
        }
    }
    let window = (Instant::now().min(end)).saturating_duration_since(warm_end);
    let (cpu, procs) = cpu_task.await.unwrap_or_default();
    LoadResult {
        window_start: warm_end,
        window_end: end,
        procs,
        ok,
        errors,
        window,
        rps: ok as f64 / window.as_secs_f64().max(1e-9),
        latency: hist.summary(),
        cpu,
    }
}

/// The ceiling: an axum handler that reads the body and answers 200 with a small JSON, on the
/// same kind of listener as the daemon's.
pub struct Bare {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Bare {
    pub async fn start() -> std::io::Result<Self> {
        use axum::{Json, Router, body::Bytes, routing::post};
        let app = Router::new().route(
            "/webhooks/{channel}",
            post(|body: Bytes| async move {
                Json(serde_json::json!({ "status": "accepted", "new": 1, "bytes": body.len() }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { addr, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}
