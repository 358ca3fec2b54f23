//! The retry schedule, and the fallback for failures the remediation table has no trigger for
//! (byocd's own findings before any call: a malformed row, a channel no longer configured). Every
//! failure with a trigger goes by `lifecycle::remediation` instead (see `Relay::process_chain`).
//!
//! | class | action |
//! |---|---|
//! | retryable (timeouts, 429, 5xx, 10019, 10094 …) | retry on the schedule; dead letter after the last step |
//! | authorisation (the token was re-minted once by the client and still refused) | retry on the schedule — a fixed connected app recovers by itself; dead letter after the last step |
//! | configuration (channel or org set-up) | retry on the schedule, so work waits for the fix instead of being lost |
//! | bad input (Salesforce would never accept this request) | dead letter at once |
//! | not found (the conversation or session is gone) | dead letter at once |

use std::time::Duration;

use crate::salesforce::codes::ErrorClass;

/// What to do with a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try again after this long.
    Retry {
        /// The delay.
        after: Duration,
    },
    /// Give up: dead letter with an alert.
    DeadLetter,
}

/// Share of a delay that jitter may add or remove.
const JITTER: f64 = 0.2;

/// The action for a failure of `class` on attempt `attempts` (1 for the first).
pub fn classify(
    class: ErrorClass,
    attempts: i32,
    schedule: &[Duration],
    retry_after: Option<Duration>,
) -> Action {
    match class {
        ErrorClass::BadInput | ErrorClass::NotFound => Action::DeadLetter,
        ErrorClass::Retryable | ErrorClass::Authorisation | ErrorClass::Configuration => {
            match retry_delay(attempts, schedule, retry_after) {
                Some(after) => Action::Retry { after },
                None => Action::DeadLetter,
            }
        }
    }
}

/// The delay before the retry that follows attempt `attempts`, or `None` when the schedule is
/// exhausted: the schedule's step with ±20 % jitter, or `retry_after` when that is longer.
pub fn retry_delay(
    attempts: i32,
    schedule: &[Duration],
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let step = usize::try_from(attempts.max(1) - 1).ok()?;
    let base = *schedule.get(step)?;
    let jittered = base.mul_f64(1.0 + JITTER * (2.0 * unit_random() - 1.0));
    Some(retry_after.map_or(jittered, |wait| jittered.max(wait)))
}

/// A random number in [0, 1), from the operating system's generator.
fn unit_random() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ];

    #[test]
    fn delays_follow_the_schedule_within_the_jitter_and_end_with_it() {
        for (attempt, base) in [(1, 10.0), (2, 60.0), (3, 600.0)] {
            for _ in 0..200 {
                let d = retry_delay(attempt, &SCHEDULE, None).unwrap().as_secs_f64();
                assert!(d >= base * 0.8 && d <= base * 1.2, "{attempt}: {d}");
            }
        }
        assert_eq!(retry_delay(4, &SCHEDULE, None), None);
    }

    #[test]
    fn a_longer_retry_after_wins() {
        let d = retry_delay(1, &SCHEDULE, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(d, Duration::from_secs(30));
        let d = retry_delay(3, &SCHEDULE, Some(Duration::from_secs(1))).unwrap();
        assert!(d >= Duration::from_secs(480));
    }

    #[test]
    fn bad_input_and_not_found_are_dead_at_once_the_rest_retry_until_the_end() {
        assert_eq!(
            classify(ErrorClass::BadInput, 1, &SCHEDULE, None),
            Action::DeadLetter
        );
        assert_eq!(
            classify(ErrorClass::NotFound, 1, &SCHEDULE, None),
            Action::DeadLetter
        );
        for class in [
            ErrorClass::Retryable,
            ErrorClass::Authorisation,
            ErrorClass::Configuration,
        ] {
            assert!(matches!(
                classify(class, 3, &SCHEDULE, None),
                Action::Retry { .. }
            ));
            assert_eq!(classify(class, 4, &SCHEDULE, None), Action::DeadLetter);
        }
    }
}
