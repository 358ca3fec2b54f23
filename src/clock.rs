//! Time as the daemon sees it. Production reads the system clock; tests move a manual one, so
//! nothing that depends on elapsed time needs a sleep to be tested.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock mutex poisoned") += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().expect("clock mutex poisoned") = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock mutex poisoned")
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// `at + by`, saturating at the latest time chrono represents instead of panicking: a delay
/// that comes from outside (a `Retry-After`) can be any size.
pub fn later(at: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    Duration::from_std(by)
        .ok()
        .and_then(|by| at.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_instead_of_panicking() {
        let now = Utc::now();
        assert_eq!(
            later(now, std::time::Duration::from_secs(60)),
            now + Duration::seconds(60)
        );
        assert_eq!(
            later(now, std::time::Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
        // Within chrono's `TimeDelta` but beyond its calendar.
        assert_eq!(
            later(now, std::time::Duration::from_secs(1 << 52)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
