//! A delivery that did not succeed, and what to do about it: one [`Failure`] type for every job
//! the relay delivers (routing steps included), made once from each source error
//! (`From<IsaError>`, `From<ProviderError>`, `From<DownloadError>`) and keeping it, and one
//! decision ([`Failure::decide`]) over the remediation table (`lifecycle::remediation`).
//!
//! A failure from a call carries the table's [`Trigger`]: the table's row decides. byocd's own
//! findings before any call (a malformed row, a channel no longer configured, no org) have no
//! trigger and go by their class:
//!
//! | class | action |
//! |---|---|
//! | bad input (Salesforce would never accept this request) | dead letter at once |
//! | not found (the conversation or session is gone) | dead letter at once |
//! | any other | retry on the schedule; dead letter after the last step |
//!
//! A row that says retry waits the schedule's next step (±20 % jitter, a longer `Retry-After`
//! wins) and dead-letters after the last one.

use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::remediation::{Action as Remedy, TransportKind, Trigger, remedy};
use crate::{
    providers::{ProviderError, ProviderErrorClass},
    salesforce::{codes::ErrorClass, files::DownloadError, isa::IsaError},
};

/// A delivery that did not succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What happened, for the audit trail and the row's `last_error` (with the `RequestId` of
    /// a Salesforce call).
    pub error: String,
    /// The error code (Salesforce's code or `errorReason`, or the provider's), if any.
    pub code: Option<String>,
    /// What the failure means.
    pub class: ErrorClass,
    /// What the remediation table looks up; `None` for byocd's own findings (a malformed row,
    /// a channel no longer configured), which go by `class`.
    pub trigger: Option<Trigger>,
    /// The error it was made from, if it came from a call.
    pub source: Option<Arc<Source>>,
}

/// The error a [`Failure`] was made from.
#[derive(Debug)]
pub enum Source {
    /// An Interaction Service call.
    Isa(IsaError),
    /// A provider call.
    Provider(ProviderError),
    /// The download of a rep's file.
    Download(DownloadError),
}

/// What to do about a failure ([`Failure::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Stop sending on the channel and probe it (the table's `pause_channel`, or
    /// `remint_then_retry`: the client already re-minted once and the new token was refused).
    Pause(Remedy),
    /// Stop sending on every channel of the org until reload.
    DisableOrg,
    /// Salesforce no longer has what the work names: settle it without sending it again.
    Reconcile,
    /// Try again after this long.
    Retry {
        /// The delay.
        after: Duration,
    },
    /// Give up: dead letter with an alert.
    DeadLetter,
}

impl Decision {
    /// The action as audit rows and metrics name it.
    pub fn action(self) -> Remedy {
        match self {
            Decision::Pause(remedy) => remedy,
            Decision::DisableOrg => Remedy::DisableOrg,
            Decision::Reconcile => Remedy::Reconcile,
            Decision::Retry { .. } => Remedy::Retry,
            Decision::DeadLetter => Remedy::DeadLetterAlert,
        }
    }
}

impl Failure {
    /// byocd's own finding, before or beside any call.
    pub fn new(error: impl Into<String>, class: ErrorClass) -> Self {
        Self {
            error: error.into(),
            code: None,
            class,
            trigger: None,
            source: None,
        }
    }

    /// The `RequestId` of the Salesforce call that failed, if it reached Salesforce.
    pub fn request_id(&self) -> Option<Uuid> {
        match self.source.as_deref() {
            Some(Source::Isa(error)) => isa_request_id(error),
            _ => None,
        }
    }

    /// How long the service asked us to wait (its `Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.source.as_deref()? {
            Source::Isa(error) => error.retry_after(),
            Source::Provider(error) => error.retry_after,
            Source::Download(_) => None,
        }
    }

    /// What to do about this failure on attempt `attempts` (1 for the first) with the retry
    /// schedule `schedule`: the remediation table's row for its trigger, or its class's when it
    /// has none; a retry waits the schedule's step, or dead-letters when the schedule is used up.
    /// A `Retry-After` longer than `max_retry_after` counts as `max_retry_after`.
    pub fn decide(
        &self,
        attempts: i32,
        schedule: &[Duration],
        max_retry_after: Duration,
    ) -> Decision {
        match self.remedy() {
            remedy @ (Remedy::PauseChannel | Remedy::RemintThenRetry) => Decision::Pause(remedy),
            Remedy::DisableOrg => Decision::DisableOrg,
            Remedy::Reconcile => Decision::Reconcile,
            Remedy::DeadLetterAlert => Decision::DeadLetter,
            Remedy::Retry => match retry_delay(
                attempts,
                schedule,
                self.retry_after().map(|wait| wait.min(max_retry_after)),
            ) {
                Some(after) => Decision::Retry { after },
                None => Decision::DeadLetter,
            },
        }
    }

    /// What the remediation table says to do (for a trigger-less finding, by its class).
    pub fn remedy(&self) -> Remedy {
        match &self.trigger {
            Some(trigger) => remedy(trigger).action,
            None => match self.class {
                ErrorClass::BadInput | ErrorClass::NotFound => Remedy::DeadLetterAlert,
                _ => Remedy::Retry,
            },
        }
    }

    /// The code that triggered the action, as audit rows name it.
    pub fn trigger_label(&self) -> String {
        match (&self.trigger, &self.code) {
            (Some(trigger), _) => trigger.to_string(),
            (None, Some(code)) => code.clone(),
            (None, None) => format!("byocd:{}", self.class.as_str()),
        }
    }
}

fn isa_request_id(error: &IsaError) -> Option<Uuid> {
    match error {
        IsaError::Api { request_id, .. }
        | IsaError::Refused { request_id, .. }
        | IsaError::Transport { request_id, .. } => Some(*request_id),
        _ => None,
    }
}

/// The table's trigger for an Interaction Service failure.
pub fn isa_trigger(error: &IsaError) -> Option<Trigger> {
    match error {
        IsaError::Invalid { .. } => None,
        IsaError::UnknownOrg { .. } => Some(Trigger::TokenEndpoint("unknown_org".into())),
        IsaError::Auth { source, .. } => Some(Trigger::TokenEndpoint(source.word())),
        IsaError::Api {
            status,
            code,
            message,
            ..
        } => Some(Trigger::from_isa_answer(*status, *code, message.as_deref())),
        IsaError::Refused { reason, code, .. } => Some(match (reason, code) {
            (Some(reason), _) => Trigger::ErrorReason(reason.clone()),
            (None, Some(code)) => Trigger::IsaCode(*code),
            (None, None) => Trigger::Http(200),
        }),
        IsaError::Transport { timeout, .. } => Some(Trigger::Transport(if *timeout {
            TransportKind::Timeout
        } else {
            TransportKind::Reset
        })),
    }
}

impl From<IsaError> for Failure {
    /// The error's text with the `RequestId` of the failed attempt; its code, or else its
    /// `errorReason`, as the code.
    fn from(error: IsaError) -> Self {
        let code = error
            .code()
            .map(|c| c.to_string())
            .or_else(|| match &error {
                IsaError::Refused {
                    reason: Some(reason),
                    ..
                } => Some(reason.as_str().to_owned()),
                _ => None,
            });
        Failure {
            trigger: isa_trigger(&error),
            code,
            class: error.class(),
            error: match isa_request_id(&error) {
                Some(id) => format!("{error} (RequestId {id})"),
                None => error.to_string(),
            },
            source: Some(Arc::new(Source::Isa(error))),
        }
    }
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        let trigger = match error.status {
            Some(_) => Trigger::Provider {
                provider: error.provider,
                status: error.status,
                code: error.code.clone(),
            },
            None if error
                .message
                .as_deref()
                .is_some_and(|m| m.contains("timed out")) =>
            {
                Trigger::Transport(TransportKind::Timeout)
            }
            None => Trigger::Transport(TransportKind::Connect),
        };
        Failure {
            trigger: Some(trigger),
            class: match error.class {
                ProviderErrorClass::Retryable => ErrorClass::Retryable,
                ProviderErrorClass::Authorisation => ErrorClass::Configuration,
                ProviderErrorClass::Permanent => ErrorClass::BadInput,
            },
            code: error.code.clone(),
            error: error.to_string(),
            source: Some(Arc::new(Source::Provider(error))),
        }
    }
}

impl From<DownloadError> for Failure {
    /// byocd's own reading of the download (no trigger): a 4xx is gone, the rest is retried.
    fn from(error: DownloadError) -> Self {
        Failure {
            source: None,
            ..Failure::new(error.to_string(), error.class())
        }
        .with_source(Source::Download(error))
    }
}

impl Failure {
    fn with_source(mut self, source: Source) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
}

/// Share of a delay that jitter may add or remove.
const JITTER: f64 = 0.2;

/// The delay before the retry that follows attempt `attempts`, or `None` when the schedule is
/// exhausted: the schedule's step with ±20 % jitter, or `retry_after` when that is longer.
pub fn retry_delay(
    attempts: i32,
    schedule: &[Duration],
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let step = usize::try_from(attempts.max(1) - 1).ok()?;
    let base = *schedule.get(step)?;
    let jittered = base.mul_f64(1.0 + JITTER * (2.0 * fastrand::f64() - 1.0));
    Some(retry_after.map_or(jittered, |wait| jittered.max(wait)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::{codes::ErrorReason, isa::endpoint};

    const MAX: Duration = Duration::from_secs(3600);
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
    fn findings_without_a_trigger_go_by_class_bad_input_and_not_found_dead_at_once() {
        for class in [ErrorClass::BadInput, ErrorClass::NotFound] {
            assert_eq!(
                Failure::new("x", class).decide(1, &SCHEDULE, MAX),
                Decision::DeadLetter
            );
        }
        for class in [
            ErrorClass::Retryable,
            ErrorClass::Authorisation,
            ErrorClass::Configuration,
        ] {
            assert!(matches!(
                Failure::new("x", class).decide(3, &SCHEDULE, MAX),
                Decision::Retry { .. }
            ));
            assert_eq!(
                Failure::new("x", class).decide(4, &SCHEDULE, MAX),
                Decision::DeadLetter
            );
        }
    }

    #[test]
    fn a_huge_retry_after_is_cut_to_the_maximum() {
        let throttled = Failure::from(IsaError::Api {
            endpoint: endpoint::ROUTE,
            status: 429,
            code: Some(429),
            message: None,
            class: crate::salesforce::codes::classify(429, Some(429)),
            retry_after: Some(Duration::from_secs(u64::MAX)),
            request_id: Uuid::nil(),
        });
        assert_eq!(
            throttled.decide(1, &SCHEDULE, MAX),
            Decision::Retry { after: MAX }
        );
    }

    #[test]
    fn the_table_decides_a_failure_with_a_trigger() {
        let api = |status, code: Option<u32>, message: Option<&str>| {
            Failure::from(IsaError::Api {
                endpoint: endpoint::ROUTE,
                status,
                code,
                message: message.map(str::to_owned),
                class: crate::salesforce::codes::classify(status, code),
                retry_after: None,
                request_id: Uuid::nil(),
            })
        };
        // 10001: the channel's AuthorizationContext is wrong → pause.
        assert_eq!(
            api(400, Some(10001), None).decide(1, &SCHEDULE, MAX),
            Decision::Pause(Remedy::PauseChannel)
        );
        assert_eq!(
            api(401, None, None).decide(1, &SCHEDULE, MAX),
            Decision::Pause(Remedy::RemintThenRetry)
        );
        // The rate-limit message retries, as the table says, even on a status whose class alone
        // would dead-letter (the class was consulted after the table before: a dead letter).
        assert!(matches!(
            api(
                400,
                None,
                Some(crate::salesforce::codes::RATE_LIMIT_MESSAGE)
            )
            .decide(1, &SCHEDULE, MAX),
            Decision::Retry { .. }
        ));
        assert_eq!(
            api(400, None, None).decide(1, &SCHEDULE, MAX),
            Decision::DeadLetter
        );
    }

    #[test]
    fn an_isa_failure_keeps_its_request_id_and_names_its_error_reason() {
        let request_id = Uuid::new_v4();
        let failure = Failure::from(IsaError::Refused {
            endpoint: endpoint::MESSAGING_SESSION,
            reason: Some(ErrorReason::SessionNotFound),
            code: None,
            message: None,
            class: ErrorClass::NotFound,
            request_id,
        });
        assert!(
            failure
                .error
                .ends_with(&format!("(RequestId {request_id})")),
            "{}",
            failure.error
        );
        assert_eq!(failure.code.as_deref(), Some("SESSION_NOT_FOUND"));
        assert_eq!(failure.request_id(), Some(request_id));
        assert_eq!(failure.trigger_label(), "SESSION_NOT_FOUND");
        assert_eq!(failure.decide(1, &SCHEDULE, MAX), Decision::Reconcile);
    }
}
