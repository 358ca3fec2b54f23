//! Shared test helpers: a fresh database per test on either backend.
//!
//! SQLite databases live in a temporary directory. PostgreSQL databases are created on the
//! throwaway cluster that `scripts/test.sh` starts and names in `BYOCD_TEST_PG_URL`; without it
//! the PostgreSQL half of the suite fails with a message saying how to run it.
#![allow(dead_code, unused_imports)]

pub mod channels;
pub mod daemon;
#[cfg(feature = "sandbox")]
pub mod harness;
#[cfg(feature = "sandbox")]
pub mod outbound;
pub mod pg_cluster;
pub mod salesforce;

use byocd::store::{AnyStore, StoreOptions};

/// The variable `scripts/test.sh` sets to the throwaway cluster's admin URL.
pub const PG_URL_VAR: &str = "BYOCD_TEST_PG_URL";

/// A fresh, empty database that lives as long as this value.
pub struct TestDb {
    /// URL of the database.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new SQLite database file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("byocd.db").display());
        Self {
            url,
            _dir: Some(dir),
        }
    }

    /// A new database on the throwaway PostgreSQL cluster.
    pub async fn postgres() -> Self {
        let admin = std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
            panic!(
                "{PG_URL_VAR} is not set: run the suite with `bash scripts/test.sh`, which starts \
                 a throwaway PostgreSQL for the PostgreSQL half of the tests"
            )
        });
        let name = format!("byocd_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("connect to the test cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let (base, _) = admin.rsplit_once('/').expect("admin url has a database");
        Self {
            url: format!("{base}/{name}"),
            _dir: None,
        }
    }

    /// Opens the store (not migrated).
    pub async fn open(&self) -> AnyStore {
        AnyStore::open(&self.url, StoreOptions::default())
            .await
            .expect("open store")
    }

    /// Opens the store and migrates it.
    pub async fn migrated(&self) -> AnyStore {
        use byocd::store::Store;
        let store = self.open().await;
        store.migrate().await.expect("migrate");
        store
    }
}

/// Fails the test when a relay step left a row unsettled: the database refused to record what
/// happened to it, so it would go out again after its lease — a bug (such as a value a CHECK
/// refuses) unless the test injects a store fault.
pub fn assert_settled(step: &[(i64, byocd::relay::Settled)]) {
    if let Some((id, _)) = step
        .iter()
        .find(|(_, s)| *s == byocd::relay::Settled::Unsettled)
    {
        panic!("outbox row {id} could not be settled: see the relay's error log");
    }
}

/// A turn among the tests that drive real daemons under load (crash, operations,
/// relay_replicas): no two of them run at once, on a machine of two cores. When each file was its
/// own test binary, crash and operations each had a lock of their own and the binaries ran one
/// after another; in one process the turn must be shared. Hold the guard for the whole test. A
/// tokio mutex, so a failed test does not poison the others' turns.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Runs each named `async fn(TestDb)` once on SQLite and once on PostgreSQL, as
/// `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestDb::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::TestDb::postgres().await).await
                }
            )*
        }
    };
}
