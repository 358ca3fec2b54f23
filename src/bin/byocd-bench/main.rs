//! `byocd-bench`: the benchmarks of docs/benchmarks.md, against the sandbox emulators on
//! loopback. `bash scripts/bench.sh` builds it in release, starts a throwaway PostgreSQL and
//! runs it; it rewrites docs/benchmarks.md with the figures of that one run.
//!
//! Every part is bounded in requests and in time, and the whole run in time (`--budget`): a
//! part that no longer fits is skipped and the report says so.

mod daemon;
mod flow;
mod load;
mod pgstat;
mod report;
mod seed;
mod speed;
mod stats;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;

use crate::{
    daemon::{ChildDaemon, InProcess, Served},
    flow::Rate,
    load::ClosedLoop,
    report::{AcceptRow, FlowRuns, FullRow, MemoryRow, OneRow, Report, StartRuns, SweepBackend},
    stats::{Machine, Watch, proc_memory},
};

#[derive(Debug, Parser)]
#[command(
    name = "byocd-bench",
    about = "byocd's benchmarks; rewrites docs/benchmarks.md"
)]
struct Args {
    /// Where databases, configurations and logs go (removed by scripts/bench.sh afterwards).
    #[arg(long)]
    work_dir: PathBuf,
    /// The report to write.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Admin URL of a throwaway PostgreSQL cluster; without it PostgreSQL is skipped.
    #[arg(long, env = "BYOCD_BENCH_PG_URL")]
    pg_url: Option<String>,
    /// The throwaway cluster's data directory (its postmaster.pid names the process whose
    /// children are PostgreSQL's CPU); without it the bench asks the server (`SHOW
    /// data_directory`).
    #[arg(long, env = "BYOCD_BENCH_PG_DATA")]
    pg_data: Option<PathBuf>,
    /// The release `byocd` binary (end to end at full speed, resident memory and start-up are
    /// measured on it).
    #[arg(long)]
    daemon_bin: Option<PathBuf>,
    /// Seconds the whole run may take; parts that no longer fit are skipped.
    #[arg(long, default_value_t = 480)]
    budget: u64,
    /// Multiplies every duration and size (0.2 for a quick trial; figures are then not the
    /// reference ones).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run only these parts (accept, throughput, conversation, finished, e2e, outbound, sweep,
    /// memory, start); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The command line that reproduces this run, for the report.
    #[arg(long, default_value = "bash scripts/bench.sh")]
    command: String,
}

/// The end-to-end target: this rate per org, with p99 under this.
pub const E2E_TARGET_RATE: u32 = 2000;
pub const E2E_TARGET_P99_MS: f64 = 50.0;

struct Bench {
    args: Args,
    started: Instant,
    deadline: Instant,
    report: Report,
    bin: PathBuf,
    /// Whether pg_stat_statements answers.
    pg_stats: bool,
    /// The cluster's postmaster, whose processes are PostgreSQL's CPU.
    postmaster: Option<u32>,
}

impl Bench {
    fn secs(&self, s: f64) -> Duration {
        Duration::from_secs_f64((s * self.args.scale).max(0.5))
    }

    fn count(&self, n: u64) -> u64 {
        ((n as f64 * self.args.scale).round() as u64).max(1)
    }

    fn wants(&self, part: &str) -> bool {
        self.args.only.is_empty() || self.args.only.iter().any(|p| p == part)
    }

    /// Whether `need` still fits in the budget; records a skip when not.
    fn fits(&mut self, part: &str, need: Duration) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if need <= left {
            return true;
        }
        let note = format!(
            "{part}: skipped, it needs about {} s and {} s of the budget were left",
            need.as_secs(),
            left.as_secs()
        );
        eprintln!("byocd-bench: {note}");
        self.report.skipped.push(note);
        false
    }

    fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.args.work_dir.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Records a part that failed (the run goes on with the next part).
    fn failed(&mut self, part: &str, result: anyhow::Result<()>) {
        if let Err(e) = result {
            let note = format!("{part}: failed: {e:#}");
            eprintln!("byocd-bench: {note}");
            self.report.skipped.push(note);
        }
    }

    fn progress(&self, what: &str) {
        eprintln!(
            "byocd-bench [{:>5.1} s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A fresh database for `name` on `backend` ("sqlite": empty URL, the stack's state dir).
    async fn database(&self, backend: &str, name: &str) -> anyhow::Result<String> {
        match backend {
            "postgres" => {
                let admin = self
                    .args
                    .pg_url
                    .as_deref()
                    .context("no PostgreSQL URL (--pg-url)")?;
                pg_database(admin, name).await
            }
            _ => Ok(String::new()),
        }
    }

    /// Resets PostgreSQL's statement counters before a run on `backend`.
    async fn pg_reset(&self, backend: &str) {
        if let (true, "postgres", Some(admin)) =
            (self.pg_stats, backend, self.args.pg_url.as_deref())
        {
            pgstat::reset(admin).await;
        }
    }

    /// What PostgreSQL spent its time on since the reset.
    async fn pg_read(&self, backend: &str) -> Option<pgstat::PgStats> {
        match (self.pg_stats, backend, self.args.pg_url.as_deref()) {
            (true, "postgres", Some(admin)) => pgstat::read(admin, 4).await,
            _ => None,
        }
    }

    fn backends(&self) -> Vec<&'static str> {
        if self.args.pg_url.is_some() {
            vec!["sqlite", "postgres"]
        } else {
            vec!["sqlite"]
        }
    }
}

/// Creates database `name` on the cluster at `admin`; returns its URL.
async fn pg_database(admin: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, _) = admin
        .rsplit_once('/')
        .context("the PostgreSQL URL names no database")?;
    Ok(format!("{base}/{name}"))
}

/// The postmaster of the cluster at `admin`: the first line of `<data dir>/postmaster.pid`.
async fn pg_postmaster(admin: &str, data: Option<&std::path::Path>) -> Option<u32> {
    use sqlx::Connection;
    let dir = match data {
        Some(d) => d.to_owned(),
        None => {
            let mut c = sqlx::PgConnection::connect(admin).await.ok()?;
            let d: String = sqlx::query_scalar("SHOW data_directory")
                .fetch_one(&mut c)
                .await
                .ok()?;
            PathBuf::from(d)
        }
    };
    stats::postmaster_pid(&dir)
}

async fn versions(pg_url: Option<&str>) -> (String, String) {
    use sqlx::Connection;
    let sqlite = match sqlx::SqliteConnection::connect("sqlite::memory:").await {
        Ok(mut c) => sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|_| "unknown".into()),
        Err(_) => "unknown".into(),
    };
    let postgres = match pg_url {
        Some(url) => match sqlx::PgConnection::connect(url).await {
            Ok(mut c) => sqlx::query_scalar::<_, String>("SELECT version()")
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|_| "unknown".into()),
            Err(_) => "unreachable".into(),
        },
        None => "not measured (no --pg-url)".into(),
    };
    (sqlite, postgres)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work_dir)?;
    let started = Instant::now();
    let mut machine = Machine::describe(&args.work_dir);
    let (sqlite, postgres) = versions(args.pg_url.as_deref()).await;
    machine.sqlite = sqlite;
    machine.postgres = postgres;
    let bin = args.daemon_bin.clone().unwrap_or_else(daemon::default_bin);
    let deadline = started + Duration::from_secs(args.budget);
    let pg_stats = match args.pg_url.as_deref() {
        Some(admin) => pgstat::enable(admin).await,
        None => false,
    };
    let postmaster = match args.pg_url.as_deref() {
        Some(admin) => pg_postmaster(admin, args.pg_data.as_deref()).await,
        None => None,
    };
    if args.pg_url.is_some() && postmaster.is_none() {
        eprintln!(
            "byocd-bench: PostgreSQL's postmaster not found (--pg-data): its CPU is not counted"
        );
    }
    let mut bench = Bench {
        pg_stats,
        postmaster,
        report: Report::new(machine, args.command.clone(), args.scale),
        args,
        started,
        deadline,
        bin,
    };
    bench.progress("probing the disk's fsync cost");
    bench.report.fsync =
        stats::probe_fsync(&bench.args.work_dir, 500, Duration::from_millis(1500)).ok();

    if bench.wants("accept") {
        let r = accept(&mut bench).await;
        bench.failed("accept", r);
    }
    if bench.wants("throughput") {
        let r = throughput(&mut bench).await;
        bench.failed("end to end at full speed", r);
    }
    if bench.wants("conversation") {
        let r = conversation(&mut bench).await;
        bench.failed("one conversation", r);
    }
    if bench.wants("finished") {
        let r = finished(&mut bench).await;
        bench.failed("beside 1,000,000 finished messages", r);
    }
    if bench.wants("e2e") {
        let r = e2e(&mut bench).await;
        bench.failed("end to end", r);
    }
    if bench.wants("outbound") {
        let r = outbound(&mut bench).await;
        bench.failed("outbound", r);
    }
    if bench.wants("sweep") || bench.wants("memory") {
        let r = sweep_and_memory(&mut bench).await;
        bench.failed("sweep and memory", r);
    }
    if bench.wants("start") {
        let r = start(&mut bench).await;
        bench.failed("start to ready", r);
    }
    bench.report.machine.load_at_end = stats::load_average();
    bench.report.total = started.elapsed();
    let text = bench.report.render();
    if let Some(dir) = bench.args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&bench.args.out, text)
        .with_context(|| format!("writing {}", bench.args.out.display()))?;
    bench.progress(&format!("wrote {}", bench.args.out.display()));
    Ok(())
}

// -------------------------------------------------------------------------------------------
// 1. Webhook accept.

async fn accept(b: &mut Bench) -> anyhow::Result<()> {
    let clients = 32;
    let spec = |b: &Bench, url: String, prefix: u32| ClosedLoop {
        url,
        clients,
        warmup: b.secs(2.0),
        measure: b.secs(10.0),
        max_requests: b.count(400_000),
        prefix,
        users: None,
        watch: None,
    };
    let alone = |b: &Bench, url: String, prefix: u32| ClosedLoop {
        url,
        clients: 1,
        warmup: b.secs(0.5),
        measure: b.secs(3.0),
        max_requests: b.count(100_000),
        prefix,
        users: None,
        watch: None,
    };
    if b.fits("accept (bare handler)", b.secs(17.0)) {
        b.progress("accept: bare axum handler");
        let bare = load::Bare::start().await?;
        let result = load::closed_loop(&spec(b, load::webhook_url(bare.addr), 100)).await;
        let alone = load::closed_loop(&alone(b, load::webhook_url(bare.addr), 101)).await;
        bare.stop().await;
        b.report.accept.push(AcceptRow {
            target: "bare axum handler (ceiling)".into(),
            backend: None,
            clients,
            result,
            alone,
            pg: None,
            pg_end_users: None,
        });
    }
    for (n, backend) in b.backends().into_iter().enumerate() {
        if !b.fits(&format!("accept ({backend})"), b.secs(24.0)) {
            continue;
        }
        b.progress(&format!("accept: byocd on {backend}"));
        let root = b.dir(&format!("accept-{backend}"))?;
        let url = b.database(backend, "bench_accept").await?;
        let daemon = InProcess::start(&root, &url, "").await?;
        b.pg_reset(backend).await;
        let result =
            load::closed_loop(&spec(b, load::webhook_url(daemon.addr), 110 + n as u32 * 2)).await;
        let pg = b.pg_read(backend).await;
        // PostgreSQL's statistics of the end users this run stored.
        let pg_end_users = if backend == "postgres" {
            let raw = seed::Raw::open(&url).await?;
            let stats = raw.table_stats("end_users").await;
            raw.close().await;
            stats
        } else {
            None
        };
        // One client alone, once the backlog of the loaded run is delivered: the cost of one
        // webhook without queueing.
        wait_quiet(&daemon.stack, b.secs(20.0)).await;
        let alone = load::closed_loop(&alone(
            b,
            load::webhook_url(daemon.addr),
            111 + n as u32 * 2,
        ))
        .await;
        daemon.stop().await;
        b.report.accept.push(AcceptRow {
            target: format!("byocd, {backend}"),
            backend: Some(backend.into()),
            clients,
            result,
            alone,
            pg,
            pg_end_users,
        });
    }
    Ok(())
}

/// Waits until the Interaction Service emulator has received nothing new for a second (the
/// relay has delivered its backlog), at most `max`.
async fn wait_quiet(stack: &byocd::sandbox::stack::Stack, max: Duration) {
    let until = Instant::now() + max;
    let mut seen = stack.salesforce.requests_from(0).len();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = seen + stack.salesforce.requests_from(seen).len();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// Rounds a rate down to a multiple of 25 (at least 25).
fn round_rate(rate: f64) -> u32 {
    ((rate / 25.0).floor() * 25.0).max(25.0) as u32
}

// -------------------------------------------------------------------------------------------
// 2. End to end, webhook → Interaction Service emulator.

/// One fixed-rate inbound run on a fresh daemon and database.
async fn e2e_run(
    b: &mut Bench,
    backend: &str,
    run: usize,
    rate: Rate,
    prefix: u32,
) -> anyhow::Result<flow::FlowResult> {
    b.progress(&format!("end to end: {backend} at {} /s", rate.per_second));
    let root = b.dir(&format!("e2e-{backend}-{run}"))?;
    let url = b.database(backend, &format!("bench_e2e_{run}")).await?;
    let daemon = InProcess::start(&root, &url, "").await?;
    let result = flow::inbound(&daemon.stack, &load::webhook_url(daemon.addr), rate, prefix).await;
    daemon.stop().await;
    Ok(result)
}

async fn e2e(b: &mut Bench) -> anyhow::Result<()> {
    for (n, backend) in b.backends().into_iter().enumerate() {
        let prefix = 200 + n as u32 * 10;
        let first = Rate {
            per_second: E2E_TARGET_RATE,
            duration: b.secs(10.0),
            drain: b.secs(8.0),
        };
        if !b.fits(&format!("end to end ({backend})"), b.secs(21.0)) {
            continue;
        }
        let mut runs = FlowRuns::new(backend);
        b.pg_reset(backend).await;
        let result = e2e_run(b, backend, 0, first, prefix).await?;
        runs.pg = b.pg_read(backend).await;
        let sustained = result.sustained(E2E_TARGET_P99_MS);
        runs.runs.push(result);
        // Not sustained: look for a rate it holds, from half the accept throughput of part 1
        // (or of this run), one step up or down.
        if !sustained {
            let accept_rps = b
                .report
                .accept
                .iter()
                .find(|r| r.backend.as_deref() == Some(backend))
                .map(|r| r.result.rps)
                .unwrap_or_else(|| runs.runs[0].accepted as f64 / first.duration.as_secs_f64());
            let mut rate = round_rate(accept_rps * 0.5);
            for step in 1..=2 {
                let r = Rate {
                    per_second: rate,
                    duration: b.secs(8.0),
                    drain: b.secs(6.0),
                };
                if !b.fits(
                    &format!("end to end ({backend}) at {rate} /s"),
                    b.secs(17.0),
                ) {
                    break;
                }
                let result = e2e_run(b, backend, step, r, prefix + step as u32).await?;
                let ok = result.sustained(E2E_TARGET_P99_MS);
                runs.runs.push(result);
                rate = if ok {
                    round_rate(f64::from(rate) * 1.4)
                } else {
                    round_rate(f64::from(rate) * 0.6)
                };
            }
        }
        b.report.e2e.push(runs);
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// 7. End to end at full speed (the release binary as a child process): many conversations, on
// an empty database and beside a million finished messages; 8. one conversation.

/// Connections of the full-speed runs (the accept p99 target is at 16).
pub const FULL_CLIENTS: usize = 16;
/// End users the full-speed runs' webhooks come from, in turn: after the first round every
/// message joins a conversation already open.
pub const FULL_USERS: u64 = 1000;
/// Finished messages stored before the daemon starts, for the second full-speed run.
pub const FINISHED_ROWS: u64 = 1_000_000;
/// Messages and connections of the one-conversation run.
pub const ONE_MESSAGES: u64 = 1000;
pub const ONE_CLIENTS: usize = 4;

impl Bench {
    /// The processes whose CPU a run on `backend` charges to its messages.
    fn watch(&self, backend: &str, daemon: u32) -> Watch {
        Watch {
            daemon,
            postmaster: if backend == "postgres" {
                self.postmaster
            } else {
                None
            },
        }
    }
}

/// One closed-loop run of `FULL_CLIENTS` connections against `byocd serve` on a fresh database
/// holding `finished` finished messages.
async fn full_run(
    b: &mut Bench,
    backend: &str,
    finished: u64,
    prefix: u32,
) -> anyhow::Result<FullRow> {
    let name = if finished > 0 { "finished" } else { "full" };
    let root = b.dir(&format!("{name}-{backend}"))?;
    let url = match backend {
        "postgres" => b.database(backend, &format!("bench_{name}")).await?,
        _ if finished > 0 => format!("sqlite://{}", root.join("state/byocd.db").display()),
        _ => String::new(),
    };
    let stack = daemon::stack(&root, &url, "").await?;
    let mut seed_secs = None;
    if finished > 0 {
        b.progress(&format!(
            "full speed: storing {finished} finished messages on {backend}"
        ));
        let seeded = async {
            let config =
                byocd::config::load(&stack.config_file).map_err(|e| anyhow::anyhow!("{e}"))?;
            seed::prepare(&url, &config).await?;
            let raw = seed::Raw::open(&url).await?;
            let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
            let took = raw.seed_finished(finished, 10_000, t0).await?;
            let done = raw.count_status("outbox", "done").await?;
            raw.close().await;
            anyhow::ensure!(
                u64::try_from(done)? == finished,
                "{done} finished outbox rows stored instead of {finished}"
            );
            Ok(took)
        }
        .await;
        match seeded {
            Ok(took) => seed_secs = Some(took.as_secs_f64()),
            Err(e) => {
                stack.shutdown().await;
                return Err(e);
            }
        }
    }
    b.progress(&format!(
        "full speed: {backend}, {finished} finished messages stored, {FULL_CLIENTS} connections"
    ));
    let served = Served::spawn(&b.bin, stack).await?;
    let watch = b.watch(backend, served.child.pid);
    b.pg_reset(backend).await;
    let result = load::closed_loop(&ClosedLoop {
        url: load::webhook_url(served.addr()),
        clients: FULL_CLIENTS,
        warmup: b.secs(2.0),
        measure: b.secs(10.0),
        max_requests: b.count(1_000_000),
        prefix,
        users: Some(FULL_USERS),
        watch: Some(watch),
    })
    .await;
    let pg = b.pg_read(backend).await;
    // A call open at the end of the window is logged when answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered = speed::delivered_between(
        &served.stack.salesforce,
        result.window_start,
        result.window_end,
    );
    served.stop().await;
    Ok(FullRow {
        backend: backend.into(),
        finished,
        seed_secs,
        result,
        delivered,
        pg,
    })
}

async fn throughput(b: &mut Bench) -> anyhow::Result<()> {
    for (n, backend) in b.backends().into_iter().enumerate() {
        if !b.fits(
            &format!("end to end at full speed ({backend})"),
            b.secs(12.0) + Duration::from_secs(5),
        ) {
            continue;
        }
        let row = full_run(b, backend, 0, 500 + n as u32 * 10).await?;
        b.report.full.push(row);
    }
    Ok(())
}

async fn finished(b: &mut Bench) -> anyhow::Result<()> {
    let rows = b.count(FINISHED_ROWS);
    for (n, backend) in b.backends().into_iter().enumerate() {
        let seeding = if backend == "postgres" { 70.0 } else { 25.0 };
        if !b.fits(
            &format!("end to end beside {rows} finished messages ({backend})"),
            b.secs(12.0 + seeding) + Duration::from_secs(5),
        ) {
            continue;
        }
        let row = full_run(b, backend, rows, 520 + n as u32 * 10).await?;
        b.report.full.push(row);
    }
    Ok(())
}

async fn conversation(b: &mut Bench) -> anyhow::Result<()> {
    let messages = b.count(ONE_MESSAGES) as usize;
    for (n, backend) in b.backends().into_iter().enumerate() {
        if !b.fits(
            &format!("one conversation ({backend})"),
            b.secs(20.0) + Duration::from_secs(5),
        ) {
            continue;
        }
        let root = b.dir(&format!("one-{backend}"))?;
        let url = b.database(backend, "bench_one").await?;
        let stack = daemon::stack(&root, &url, "").await?;
        let served = Served::spawn(&b.bin, stack).await?;
        b.progress(&format!(
            "one conversation: {backend}, {messages} webhooks over {ONE_CLIENTS} connections"
        ));
        let watch = b.watch(backend, served.child.pid);
        b.pg_reset(backend).await;
        let result = speed::one_conversation(
            &served.stack,
            &load::webhook_url(served.addr()),
            messages,
            ONE_CLIENTS,
            600 + n as u32,
            b.secs(30.0).max(Duration::from_secs(10)),
            b.secs(15.0).max(Duration::from_secs(5)),
            Some(watch),
        )
        .await;
        let pg = b.pg_read(backend).await;
        served.stop().await;
        if let Err(e) = &result.check {
            eprintln!(
                "byocd-bench: ONE CONVERSATION ON {backend} FAILED: {e} (never accepted: {}, \
                 delivered more than once: {}, out of order: {})",
                result.unaccepted, result.duplicates, result.order_violations
            );
        }
        b.report.one.push(OneRow {
            backend: backend.into(),
            result,
            pg,
        });
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// 3. Outbound, Pub/Sub event → 8x8 emulator.

/// The offered rate of rep messages.
pub const OUTBOUND_RATE: u32 = 1000;

/// One fixed-rate outbound run on a fresh daemon and database.
async fn outbound_run(
    b: &mut Bench,
    backend: &str,
    run: usize,
    rate: Rate,
    prefix: u32,
) -> anyhow::Result<(flow::FlowResult, Option<pgstat::PgStats>)> {
    let conversations = b.count(300) as usize;
    let root = b.dir(&format!("outbound-{backend}-{run}"))?;
    let url = b
        .database(backend, &format!("bench_outbound_{run}"))
        .await?;
    let daemon = InProcess::start(&root, &url, "").await?;
    b.progress(&format!(
        "outbound: {backend}: opening {conversations} conversations"
    ));
    let users = flow::open_conversations(
        &daemon.stack,
        &load::webhook_url(daemon.addr),
        conversations,
        prefix,
    )
    .await?;
    // Let byocd settle the last answers (conversation identifiers) before reps write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.progress(&format!("outbound: {backend} at {} /s", rate.per_second));
    b.pg_reset(backend).await;
    let result = flow::outbound(&daemon.stack, &users, rate, prefix + 1).await;
    let pg = b.pg_read(backend).await;
    daemon.stop().await;
    Ok((result, pg))
}

async fn outbound(b: &mut Bench) -> anyhow::Result<()> {
    for (n, backend) in b.backends().into_iter().enumerate() {
        let prefix = 300 + n as u32 * 10;
        if !b.fits(&format!("outbound ({backend})"), b.secs(20.0)) {
            continue;
        }
        let mut runs = FlowRuns::new(backend);
        let first = Rate {
            per_second: OUTBOUND_RATE,
            duration: b.secs(8.0),
            drain: b.secs(8.0),
        };
        let (result, pg) = outbound_run(b, backend, 0, first, prefix).await?;
        runs.pg = pg;
        let sustained = result.sustained(E2E_TARGET_P99_MS);
        let capacity = result.capacity();
        runs.runs.push(result);
        if !sustained {
            let rate = round_rate(capacity * 0.8);
            let second = Rate {
                per_second: rate,
                duration: b.secs(6.0),
                drain: b.secs(6.0),
            };
            if b.fits(&format!("outbound ({backend}) at {rate} /s"), b.secs(16.0)) {
                let (result, _) = outbound_run(b, backend, 1, second, prefix + 2).await?;
                runs.runs.push(result);
            }
        }
        b.report.outbound.push(runs);
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// 4. Sweep, and 5. resident memory on the same seeded databases.

async fn sweep_and_memory(b: &mut Bench) -> anyhow::Result<()> {
    let n = b.count(1_000_000);
    let t0 = {
        let now = chrono::Utc::now() - chrono::Duration::hours(1);
        now - chrono::Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&now)))
    };
    // 1M on SQLite: the sweep, then the daemon's memory on it.
    let mut sqlite_1m = None;
    for backend in b.backends() {
        if !(b.wants("sweep") || (backend == "sqlite" && b.wants("memory"))) {
            continue;
        }
        if !b.fits(
            &format!("sweep ({backend})"),
            b.secs(if backend == "sqlite" { 40.0 } else { 60.0 }),
        ) {
            continue;
        }
        let root = b.dir(&format!("sweep-{backend}"))?;
        let url = match backend {
            "postgres" => b.database(backend, "bench_sweep").await?,
            _ => format!("sqlite://{}", root.join("state/byocd.db").display()),
        };
        let stack = daemon::stack(&root, &url, "").await?;
        let config = byocd::config::load(&stack.config_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        seed::prepare(&url, &config).await?;
        b.progress(&format!("sweep: seeding {n} sessions on {backend}"));
        let raw = seed::Raw::open(&url).await?;
        let seed_time = raw.seed(n, t0).await?;
        let db_file = root.join("state/byocd.db");
        let size = raw.size_mib(Some(&db_file)).await;
        b.progress(&format!(
            "sweep: seeded in {:.1} s ({size:.0} MiB); timing the selections",
            seed_time.as_secs_f64()
        ));
        let mut row = SweepBackend {
            backend: backend.into(),
            sessions: n,
            seed_secs: seed_time.as_secs_f64(),
            size_mib: size,
            ..SweepBackend::default()
        };
        if b.wants("sweep") {
            row.selects = seed::time_selects(
                &raw,
                n,
                t0,
                &[0.01, 0.10],
                &[10_000, i64::from(byocd::lifecycle::sweeper::SWEEP_BATCH)],
                5,
            )
            .await?;
            let stale = (n as f64 * 0.01).round() as u64;
            row.plan = raw
                .plan(
                    byocd::store::relay::SWEEP_SELECT_END_SQL,
                    seed::activity(t0, stale),
                    10_000,
                )
                .await
                .unwrap_or_default();
            b.progress(&format!(
                "sweep: ending the {stale} stale sessions with domain::lifecycle::sweep_sessions"
            ));
            row.sweep = Some(
                seed::sweep_all(
                    &url,
                    seed::activity(t0, stale),
                    byocd::lifecycle::sweeper::SWEEP_BATCH,
                    200,
                    b.secs(30.0),
                )
                .await?,
            );
            raw.clear_outbox().await?;
            row.lookup = Some(seed::time_lookup(&raw, n, 10).await?);
        }
        raw.close().await;
        if backend == "sqlite" {
            sqlite_1m = Some(stack);
        } else {
            stack.shutdown().await;
        }
        b.report.sweep.push(row);
    }
    if !b.wants("memory") {
        if let Some(stack) = sqlite_1m {
            stack.shutdown().await;
        }
        return Ok(());
    }
    // 100k sessions: a database of its own.
    let small = b.count(100_000);
    if b.fits("memory (100k sessions)", b.secs(25.0)) {
        let root = b.dir("memory-100k")?;
        let url = format!("sqlite://{}", root.join("state/byocd.db").display());
        let stack = daemon::stack(&root, &url, "").await?;
        let config = byocd::config::load(&stack.config_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        seed::prepare(&url, &config).await?;
        let raw = seed::Raw::open(&url).await?;
        raw.seed(small, t0).await?;
        raw.close().await;
        b.progress(&format!("memory: byocd serve with {small} sessions"));
        let row = memory(b, &stack, small, 400).await?;
        b.report.memory.push(row);
        stack.shutdown().await;
    }
    if let Some(stack) = sqlite_1m {
        if b.fits("memory (1M sessions)", b.secs(20.0)) {
            b.progress(&format!("memory: byocd serve with {n} sessions"));
            let row = memory(b, &stack, n, 410).await?;
            b.report.memory.push(row);
        }
        stack.shutdown().await;
    }
    Ok(())
}

/// Runs the release daemon on the stack's configuration, puts it under load, samples its
/// resident memory.
async fn memory(
    b: &Bench,
    stack: &byocd::sandbox::stack::Stack,
    sessions: u64,
    prefix: u32,
) -> anyhow::Result<MemoryRow> {
    let (mut child, _) = ChildDaemon::spawn(&b.bin, &stack.config_file)?;
    child.wait_ready_line(Duration::from_secs(60)).await?;
    daemon::wait_ready(child.addr, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.pid.to_string();
    let (idle_rss, _) = proc_memory(&pid).unwrap_or_default();
    let sampler = {
        let pid = pid.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            loop {
                match proc_memory(&pid) {
                    Some((rss, _)) => peak = peak.max(rss),
                    None => return peak,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let load = load::closed_loop(&ClosedLoop {
        url: load::webhook_url(child.addr),
        clients: 16,
        warmup: b.secs(1.0),
        measure: b.secs(10.0),
        max_requests: b.count(200_000),
        prefix,
        users: None,
        watch: None,
    })
    .await;
    // Let the relay finish what the load queued, then read the high-water mark.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (end_rss, hwm) = proc_memory(&pid).unwrap_or_default();
    sampler.abort();
    let stop = child.stop(Duration::from_secs(15)).await;
    let _ = stop;
    Ok(MemoryRow {
        sessions,
        idle_rss_kib: idle_rss,
        end_rss_kib: end_rss,
        hwm_kib: hwm,
        load,
    })
}

// -------------------------------------------------------------------------------------------
// 6. Start to ready.

async fn start(b: &mut Bench) -> anyhow::Result<()> {
    let runs = 7;
    if !b.fits("start to ready", Duration::from_secs(30)) {
        return Ok(());
    }
    let root = b.dir("start")?;
    let stack = daemon::stack(&root, "", "").await?;
    // The first start creates and migrates the database; it is not counted.
    b.progress("start: migrating the database (not counted)");
    let (mut first, _) = ChildDaemon::spawn(&b.bin, &stack.config_file)?;
    first.wait_ready_line(Duration::from_secs(60)).await?;
    first.stop(Duration::from_secs(15)).await;
    let mut out = StartRuns::default();
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    for run in 0..runs {
        if Instant::now() + Duration::from_secs(10) > b.deadline {
            break;
        }
        b.progress(&format!("start: run {}", run + 1));
        let (mut child, started) = ChildDaemon::spawn(&b.bin, &stack.config_file)?;
        // /readyz from the first moment: connection refused until the listener is up.
        let url = format!("http://{}/readyz", child.addr);
        let readyz = loop {
            if let Ok(r) = probe.get(&url).send().await
                && r.status().is_success()
            {
                break Instant::now();
            }
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("no /readyz 200 within 30 s:\n{}", child.tail());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let line = child.wait_ready_line(Duration::from_secs(30)).await?;
        out.line_ms
            .push(line.duration_since(started).as_secs_f64() * 1000.0);
        out.readyz_ms
            .push(readyz.duration_since(started).as_secs_f64() * 1000.0);
        let stopped = child.stop(Duration::from_secs(15)).await;
        out.stop_ms.push(stopped.as_secs_f64() * 1000.0);
    }
    stack.shutdown().await;
    b.report.start = Some(out);
    Ok(())
}
