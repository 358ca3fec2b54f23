//! The remediation table: what byocd does about every failure it can meet, and why.
//!
//! A failure is named by a [`Trigger`]: an Interaction Service error code, an `errorReason` of
//! `POST /messagingSession`, an HTTP status that came without a code, a provider's answer, a
//! transport failure, or a failed token mint. [`remedy`] looks the trigger up in **one static
//! table** of [`Rule`]s — rows of *pattern → [`Action`] + the reason for it* — and always answers:
//! every family of triggers ends in a catch-all row, and the table ends in a row that matches
//! anything.
//!
//! Rows are tried in order and the first that matches wins, so specific rows come before general
//! ones: an Interaction Service code first looks for a row of its own, then for the row of its
//! [`ErrorClass`] (from `codes.rs`), then for the row of undocumented codes.
//!
//! The same rows feed `byocd explain CODE`, `byocd explain --all` ([`render_table`]) and
//! docs/remediation.md, which a test keeps identical to what the binary prints.

use std::{fmt, fmt::Write as _};

use crate::{
    providers::{eightbyeight::NAME as EIGHT_BY_EIGHT, kaleyra::PROVIDER_NAME as KALEYRA},
    salesforce::codes::{self, ErrorClass, ErrorReason},
    store::Severity,
};

/// What byocd does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send the same work again on the retry schedule; dead-letter it and alert when the schedule
    /// is used up.
    Retry,
    /// Re-mint the org's access token and send once more; if that is refused too, pause the
    /// channel and alert.
    RemintThenRetry,
    /// The session or conversation no longer exists in Salesforce: mark it ended locally, stop
    /// sweeping it, no alert.
    Reconcile,
    /// Stop sending on the channel, keep accepting and queueing its inbound work, probe it on a
    /// backoff, resume by itself when a probe succeeds or on reload.
    PauseChannel,
    /// Stop sending on every channel of the org until the configuration is reloaded.
    DisableOrg,
    /// Dead-letter the work at once and alert.
    DeadLetterAlert,
}

impl Action {
    /// Every action, from the mildest to the hardest.
    pub const ALL: [Action; 6] = [
        Action::Retry,
        Action::RemintThenRetry,
        Action::Reconcile,
        Action::PauseChannel,
        Action::DisableOrg,
        Action::DeadLetterAlert,
    ];

    /// A stable snake_case label for audit rows, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::RemintThenRetry => "remint_then_retry",
            Action::Reconcile => "reconcile",
            Action::PauseChannel => "pause_channel",
            Action::DisableOrg => "disable_org",
            Action::DeadLetterAlert => "dead_letter",
        }
    }

    /// What byocd does, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Action::Retry => {
                "send the same work again on relay.retry_schedule (with jitter; a longer \
                 Retry-After wins); once the schedule is used up, dead-letter it and alert"
            }
            Action::RemintThenRetry => {
                "mint a new access token for the org and send the call once more at once; if the \
                 new token is refused too, pause the channel and alert"
            }
            Action::Reconcile => {
                "the session or conversation no longer exists in Salesforce: mark it ended \
                 locally, stop sweeping it, settle the work without sending it again; no alert"
            }
            Action::PauseChannel => {
                "stop sending on the channel while still accepting and queueing its inbound work; \
                 probe it on a backoff and resume by itself when a probe succeeds, or on reload; \
                 alert"
            }
            Action::DisableOrg => {
                "stop sending on every channel of the org (inbound work is still accepted and \
                 queued) until the configuration is reloaded; no probing; alert"
            }
            Action::DeadLetterAlert => {
                "dead-letter the work at once, without retrying, and alert; `byocd outbox retry \
                 ID` sends it again once the cause is fixed"
            }
        }
    }

    /// The severity of the audit row written when byocd takes this action. A retry is a warning;
    /// the dead letter that ends an exhausted schedule is an alert of its own.
    pub fn severity(self) -> Severity {
        match self {
            Action::Retry | Action::RemintThenRetry => Severity::Warning,
            Action::Reconcile => Severity::Info,
            Action::PauseChannel | Action::DisableOrg | Action::DeadLetterAlert => Severity::Alert,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// No answer within the time limit.
    Timeout,
    /// No connection could be made (refused, DNS, TLS handshake).
    Connect,
    /// The connection was cut before the answer was complete.
    Reset,
}

impl TransportKind {
    /// Every kind.
    pub const ALL: [TransportKind; 3] = [
        TransportKind::Timeout,
        TransportKind::Connect,
        TransportKind::Reset,
    ];

    /// The word `byocd explain` takes for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Timeout => "timeout",
            TransportKind::Connect => "connect",
            TransportKind::Reset => "reset",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            TransportKind::Timeout => "no answer within the time limit",
            TransportKind::Connect => "no connection could be made (refused, DNS, TLS handshake)",
            TransportKind::Reset => "the connection was cut before the answer was complete",
        }
    }

    fn parse(word: &str) -> Option<TransportKind> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(word))
    }
}

/// A failure to look up in the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// An Interaction Service error code (the `code` of its error body or of `errorDetail`),
    /// documented or not.
    IsaCode(u32),
    /// The Interaction Service's rate-limit message, which comes without a documented code or
    /// status.
    IsaRateLimit,
    /// An `errorReason` of `POST /messagingSession`, documented or not.
    ErrorReason(ErrorReason),
    /// An Interaction Service answer with this HTTP status and no documented code.
    Http(u16),
    /// A provider's answer: its HTTP status and its error code, either of which may be missing.
    Provider {
        /// `8x8` or `kaleyra` (the providers' `NAME` constants).
        provider: &'static str,
        /// The HTTP status, if the provider answered.
        status: Option<u16>,
        /// The provider's error code, as it writes it (`1002`, `RCS1004`).
        code: Option<String>,
    },
    /// No usable answer from Salesforce or a provider.
    Transport(TransportKind),
    /// A failed token mint: the OAuth `error` Salesforce returned (`invalid_grant`, …), or
    /// byocd's own word when there was no OAuth answer (`unreachable`, `signing`, `paused`,
    /// `store`, `unknown_org`) — the `error` field of the `token.mint_failed` audit row.
    TokenEndpoint(String),
}

impl Trigger {
    /// The trigger for a failed Interaction Service answer, read the way `codes::classify` reads
    /// it: a documented code decides; otherwise the rate-limit message; otherwise the status.
    pub fn from_isa_answer(status: u16, code: Option<u32>, message: Option<&str>) -> Trigger {
        match code {
            Some(code) if codes::lookup(code).is_some() => Trigger::IsaCode(code),
            _ if message.is_some_and(|m| m.contains(codes::RATE_LIMIT_MESSAGE)) => {
                Trigger::IsaRateLimit
            }
            _ => Trigger::Http(status),
        }
    }

    /// Reads what `byocd explain` accepts:
    ///
    /// - a number: a documented Interaction Service code (`10004`, `500`); else, from 100 to
    ///   599, an HTTP status; else an undocumented code. `isa:N` forces a code, `http:N` a
    ///   status;
    /// - an `errorReason` in capitals (`SESSION_NOT_FOUND`, any value), or `reason:VALUE`;
    /// - `8x8:CODE`, `kaleyra:CODE` (`kaleyra:RCS1004`); a three-digit value is an HTTP status
    ///   (`8x8:429`); `8x8:http:STATUS[:CODE]` and `8x8:code:CODE` say which;
    /// - `timeout`, `connect`, `reset`;
    /// - `rate_limit`;
    /// - a token endpoint error (`invalid_grant`, `unreachable`, …) or `token:ERROR` for any.
    pub fn parse(text: &str) -> Result<Trigger, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Self::forms("an empty code"));
        }
        if let Some((head, rest)) = text.split_once(':') {
            let head = head.to_ascii_lowercase();
            return match head.as_str() {
                "http" => parse_status(rest)
                    .map(Trigger::Http)
                    .ok_or_else(|| Self::forms(text)),
                "isa" | "code" => rest
                    .trim()
                    .parse()
                    .map(Trigger::IsaCode)
                    .map_err(|_| Self::forms(text)),
                "reason" | "errorreason" if !rest.trim().is_empty() => {
                    Ok(Trigger::ErrorReason(ErrorReason::parse(rest.trim())))
                }
                "token" if !rest.trim().is_empty() => {
                    Ok(Trigger::TokenEndpoint(rest.trim().to_owned()))
                }
                "transport" => TransportKind::parse(rest.trim())
                    .map(Trigger::Transport)
                    .ok_or_else(|| Self::forms(text)),
                _ => match provider_name(&head) {
                    Some(provider) => {
                        parse_provider(provider, rest).ok_or_else(|| Self::forms(text))
                    }
                    None => Err(Self::forms(text)),
                },
            };
        }
        if let Some(provider) = provider_name(text) {
            return Ok(Trigger::Provider {
                provider,
                status: None,
                code: None,
            });
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let Ok(number) = text.parse::<u32>() else {
                return Err(Self::forms(text));
            };
            return Ok(match u16::try_from(number) {
                Ok(status) if codes::lookup(number).is_none() && (100..=599).contains(&status) => {
                    Trigger::Http(status)
                }
                _ => Trigger::IsaCode(number),
            });
        }
        if let Some(kind) = TransportKind::parse(text) {
            return Ok(Trigger::Transport(kind));
        }
        if text.eq_ignore_ascii_case(RATE_LIMIT_WORD) {
            return Ok(Trigger::IsaRateLimit);
        }
        if RULES
            .iter()
            .any(|rule| matches!(rule.when, Pattern::Token(error) if error == text))
        {
            return Ok(Trigger::TokenEndpoint(text.to_owned()));
        }
        let mut chars = text.chars();
        if chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Ok(Trigger::ErrorReason(ErrorReason::parse(text)));
        }
        Err(Self::forms(text))
    }

    fn forms(what: &str) -> String {
        format!(
            "cannot read {what:?} as a code; give an Interaction Service code (10004), an \
             errorReason in capitals (SESSION_NOT_FOUND), http:STATUS, 8x8:CODE, kaleyra:CODE, \
             timeout, connect, reset, rate_limit, a token endpoint error (invalid_grant) or \
             token:ERROR"
        )
    }

    /// What kind of failure this is, in words.
    pub fn meaning(&self) -> String {
        match self {
            Trigger::IsaCode(code) => match codes::lookup(*code) {
                Some(_) => "an Interaction Service error code".to_owned(),
                None => {
                    "an Interaction Service error code that Salesforce does not document".to_owned()
                }
            },
            Trigger::IsaRateLimit => format!(
                "the Interaction Service's rate-limit message ({:?})",
                codes::RATE_LIMIT_MESSAGE
            ),
            Trigger::ErrorReason(reason) if reason.is_known() => {
                "an errorReason of POST /messagingSession".to_owned()
            }
            Trigger::ErrorReason(_) => {
                "an errorReason of POST /messagingSession that Salesforce does not document"
                    .to_owned()
            }
            Trigger::Http(status) => format!(
                "an Interaction Service answer with HTTP {}{} and no documented code",
                status,
                status_reason(*status)
            ),
            Trigger::Provider {
                provider,
                status,
                code,
            } => {
                let mut out = format!("an answer from {provider}");
                match status {
                    Some(status) => {
                        let _ = write!(out, " with HTTP {status}{}", status_reason(*status));
                    }
                    None => out.push_str(" without an HTTP status"),
                }
                match code {
                    Some(code) => {
                        let _ = write!(out, " and code {code}");
                    }
                    None => out.push_str(" and no code"),
                }
                out
            }
            Trigger::Transport(kind) => format!("a transport failure: {}", kind.meaning()),
            Trigger::TokenEndpoint(error) => {
                format!("a failed access-token mint for the org ({error})")
            }
        }
    }
}

/// The word `byocd explain` takes for [`Trigger::IsaRateLimit`].
const RATE_LIMIT_WORD: &str = "rate_limit";

fn parse_status(text: &str) -> Option<u16> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn provider_name(text: &str) -> Option<&'static str> {
    [EIGHT_BY_EIGHT, KALEYRA]
        .into_iter()
        .find(|name| name.eq_ignore_ascii_case(text))
}

fn parse_provider(provider: &'static str, rest: &str) -> Option<Trigger> {
    let rest = rest.trim();
    let code = |text: &str| {
        let text = text.trim();
        (!text.is_empty() && !text.contains(char::is_whitespace)).then(|| text.to_owned())
    };
    let (status, code) = if let Some(tail) = strip_prefix_ignore_case(rest, "http:") {
        match tail.split_once(':') {
            Some((status, rest)) => (Some(parse_status(status)?), Some(code(rest)?)),
            None => (Some(parse_status(tail)?), None),
        }
    } else if let Some(tail) = strip_prefix_ignore_case(rest, "code:") {
        (None, Some(code(tail)?))
    } else if rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()) {
        (Some(parse_status(rest)?), None)
    } else {
        (None, Some(code(rest)?))
    };
    Some(Trigger::Provider {
        provider,
        status,
        code,
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn status_reason(status: u16) -> String {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default()
}

/// The canonical form `byocd explain` reads back ([`Trigger::parse`] of it gives the same
/// trigger); also the form to put in audit rows.
impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::IsaCode(code) => match u16::try_from(*code) {
                Ok(n) if codes::lookup(*code).is_none() && (100..=599).contains(&n) => {
                    write!(f, "isa:{code}")
                }
                _ => write!(f, "{code}"),
            },
            Trigger::IsaRateLimit => f.write_str(RATE_LIMIT_WORD),
            Trigger::ErrorReason(reason) => {
                let raw = reason.as_str();
                // The bare value where it reads back as this reason (not as a transport word,
                // say), else with an explicit prefix.
                let plain = Trigger::parse(raw).is_ok_and(|back| back == *self);
                if plain {
                    f.write_str(raw)
                } else {
                    write!(f, "reason:{raw}")
                }
            }
            Trigger::Http(status) => write!(f, "http:{status}"),
            Trigger::Provider {
                provider,
                status,
                code,
            } => match (status, code) {
                (None, None) => f.write_str(provider),
                (Some(status), None) => write!(f, "{provider}:http:{status}"),
                (Some(status), Some(code)) => write!(f, "{provider}:http:{status}:{code}"),
                (None, Some(code)) => {
                    let ambiguous = (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
                        || strip_prefix_ignore_case(code, "http:").is_some()
                        || strip_prefix_ignore_case(code, "code:").is_some();
                    if ambiguous {
                        write!(f, "{provider}:code:{code}")
                    } else {
                        write!(f, "{provider}:{code}")
                    }
                }
            },
            Trigger::Transport(kind) => f.write_str(kind.as_str()),
            Trigger::TokenEndpoint(error) => write!(f, "token:{error}"),
        }
    }
}

impl std::str::FromStr for Trigger {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Trigger::parse(text)
    }
}

/// What a provider row looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderMatch {
    /// This HTTP status.
    Status(u16),
    /// An HTTP status in this range (both ends included).
    StatusRange(u16, u16),
    /// This error code (ASCII case ignored).
    Code(&'static str),
    /// A numeric error code in this range (both ends included).
    CodeRange(u32, u32),
    /// Anything from this provider.
    Any,
}

impl ProviderMatch {
    fn matches(self, status: Option<u16>, code: Option<&str>) -> bool {
        match self {
            ProviderMatch::Status(want) => status == Some(want),
            ProviderMatch::StatusRange(low, high) => {
                status.is_some_and(|s| (low..=high).contains(&s))
            }
            ProviderMatch::Code(want) => code.is_some_and(|c| c.eq_ignore_ascii_case(want)),
            ProviderMatch::CodeRange(low, high) => code
                .and_then(|c| c.trim().parse::<u32>().ok())
                .is_some_and(|c| (low..=high).contains(&c)),
            ProviderMatch::Any => true,
        }
    }
}

/// Which triggers a row covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// One Interaction Service code.
    IsaCode(u32),
    /// Any documented Interaction Service code of this class (rows of single codes come first).
    IsaClass(ErrorClass),
    /// An Interaction Service code Salesforce does not document.
    IsaUnknownCode,
    /// The Interaction Service's rate-limit message.
    IsaRateLimit,
    /// One `errorReason` value.
    ErrorReason(&'static str),
    /// An `errorReason` Salesforce does not document.
    UnknownErrorReason,
    /// An Interaction Service answer with this status and no documented code.
    Http(u16),
    /// The same, with a status in this range (both ends included).
    HttpRange(u16, u16),
    /// The same, with any status.
    HttpOther,
    /// A provider's answer.
    Provider {
        /// `8x8` or `kaleyra`.
        provider: &'static str,
        /// What in the answer.
        on: ProviderMatch,
    },
    /// A transport failure of this kind.
    Transport(TransportKind),
    /// A token mint that failed with this error.
    Token(&'static str),
    /// A token mint that failed in any other way.
    TokenOther,
    /// Anything (the table's last row).
    Other,
}

impl Pattern {
    /// Whether this row covers `trigger`.
    pub fn matches(&self, trigger: &Trigger) -> bool {
        match (*self, trigger) {
            (Pattern::IsaCode(want), Trigger::IsaCode(code)) => want == *code,
            (Pattern::IsaClass(class), Trigger::IsaCode(code)) => {
                codes::lookup(*code).is_some_and(|info| info.class == class)
            }
            (Pattern::IsaUnknownCode, Trigger::IsaCode(code)) => codes::lookup(*code).is_none(),
            (Pattern::IsaRateLimit, Trigger::IsaRateLimit) => true,
            (Pattern::ErrorReason(want), Trigger::ErrorReason(reason)) => reason.as_str() == want,
            (Pattern::UnknownErrorReason, Trigger::ErrorReason(reason)) => !reason.is_known(),
            (Pattern::Http(want), Trigger::Http(status)) => want == *status,
            (Pattern::HttpRange(low, high), Trigger::Http(status)) => (low..=high).contains(status),
            (Pattern::HttpOther, Trigger::Http(_)) => true,
            (
                Pattern::Provider { provider, on },
                Trigger::Provider {
                    provider: name,
                    status,
                    code,
                },
            ) => provider == *name && on.matches(*status, code.as_deref()),
            (Pattern::Transport(want), Trigger::Transport(kind)) => want == *kind,
            (Pattern::Token(want), Trigger::TokenEndpoint(error)) => want == error,
            (Pattern::TokenOther, Trigger::TokenEndpoint(_)) => true,
            (Pattern::Other, _) => true,
            _ => false,
        }
    }

    /// How the table's trigger column shows this row.
    pub fn label(&self) -> String {
        match *self {
            Pattern::IsaCode(code) => match codes::lookup(code) {
                Some(info) => format!("ISA code `{code}` {}", info.name),
                None => format!("ISA code `{code}`"),
            },
            Pattern::IsaClass(class) => {
                let covered: Vec<String> = codes::all()
                    .iter()
                    .filter(|info| info.class == class && !has_own_row(info.code))
                    .map(|info| info.code.to_string())
                    .collect();
                if covered.is_empty() {
                    format!(
                        "ISA codes of class `{class}` without a row above (none at present: the \
                         default for codes Salesforce adds later)"
                    )
                } else {
                    format!(
                        "ISA codes of class `{class}` without a row above: {}",
                        covered.join(", ")
                    )
                }
            }
            Pattern::IsaUnknownCode => "ISA code not in Salesforce's list".to_owned(),
            Pattern::IsaRateLimit => {
                format!("ISA message \"{}\"", codes::RATE_LIMIT_MESSAGE)
            }
            Pattern::ErrorReason(reason) => format!("`errorReason` `{reason}`"),
            Pattern::UnknownErrorReason => "`errorReason`, any other value".to_owned(),
            Pattern::Http(status) => format!("ISA HTTP `{status}`, no documented code"),
            Pattern::HttpRange(low, high) => {
                format!(
                    "ISA HTTP `{}`, no documented code",
                    range_label(low.into(), high.into())
                )
            }
            Pattern::HttpOther => "ISA HTTP, any other status, no documented code".to_owned(),
            Pattern::Provider { provider, on } => match on {
                ProviderMatch::Status(status) => format!("{provider} HTTP `{status}`"),
                ProviderMatch::StatusRange(low, high) => {
                    format!("{provider} HTTP `{}`", range_label(low.into(), high.into()))
                }
                ProviderMatch::Code(code) => format!("{provider} code `{code}`"),
                ProviderMatch::CodeRange(low, high) => {
                    format!("{provider} code `{}`, other", range_label(low, high))
                }
                ProviderMatch::Any => format!("{provider}, any other answer"),
            },
            Pattern::Transport(kind) => format!("transport `{}`", kind.as_str()),
            Pattern::Token(error) => format!("token endpoint `{error}`"),
            Pattern::TokenOther => "token endpoint, any other error".to_owned(),
            Pattern::Other => "anything else".to_owned(),
        }
    }
}

/// `5xx` for 500–599, `14xx` for 1400–1499; otherwise `low–high`.
fn range_label(low: u32, high: u32) -> String {
    let (low_text, high_text) = (low.to_string(), high.to_string());
    if low_text.len() == high_text.len() {
        for split in 1..low_text.len() {
            let (low_head, low_tail) = low_text.split_at(split);
            let (high_head, high_tail) = high_text.split_at(split);
            if low_head == high_head
                && low_tail.bytes().all(|b| b == b'0')
                && high_tail.bytes().all(|b| b == b'9')
            {
                return format!("{low_head}{}", "x".repeat(low_tail.len()));
            }
        }
    }
    format!("{low}–{high}")
}

fn has_own_row(code: u32) -> bool {
    RULES.iter().any(|rule| rule.when == Pattern::IsaCode(code))
}

/// One row of the table: which triggers, what to do, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The triggers this row covers.
    pub when: Pattern,
    /// What byocd does.
    pub action: Action,
    /// Why that action fits what the failure means.
    pub why: &'static str,
}

const fn rule(when: Pattern, action: Action, why: &'static str) -> Rule {
    Rule { when, action, why }
}

const fn isa(code: u32, action: Action, why: &'static str) -> Rule {
    rule(Pattern::IsaCode(code), action, why)
}

const fn reason(value: &'static str, action: Action, why: &'static str) -> Rule {
    rule(Pattern::ErrorReason(value), action, why)
}

const fn provider(
    provider: &'static str,
    on: ProviderMatch,
    action: Action,
    why: &'static str,
) -> Rule {
    rule(Pattern::Provider { provider, on }, action, why)
}

const fn token(error: &'static str, action: Action, why: &'static str) -> Rule {
    rule(Pattern::Token(error), action, why)
}

use Action::{DeadLetterAlert, DisableOrg, PauseChannel, Reconcile, RemintThenRetry, Retry};
use ProviderMatch::{Any, Code, CodeRange, Status, StatusRange};

/// The remediation table. Order matters: the first matching row wins.
static RULES: &[Rule] = &[
    // ── Interaction Service error codes: rows of their own ───────────────────────────────────
    isa(
        500,
        Retry,
        "Salesforce failed on its own side; such failures usually pass. One that persists ends in a dead letter whose alert is the cue to open a case with Salesforce Support.",
    ),
    isa(
        10001,
        PauseChannel,
        "The channel's AuthorizationContext (the CCD developer name in its channel file) does not belong to its channel address. Every call on the channel fails the same way until the channel file or the CCD is corrected.",
    ),
    isa(
        10003,
        DisableOrg,
        "The connected app lacks the interaction_api scope. One app and one token serve every channel of the org, and a freshly minted token carries the same scopes, so nothing can work until an admin adds the scope and byocd is reloaded. codes.rs calls this an authorisation fault, but re-minting cannot cure it.",
    ),
    isa(
        10004,
        RemintThenRetry,
        "The token expired or was revoked. Salesforce gives tokens no stated lifetime, so this is how a token normally ends; a new JWT-bearer mint cures it, and a refusal of the new token means something else is wrong.",
    ),
    isa(
        10005,
        PauseChannel,
        "The token is valid, but its user or app may not act under this channel's AuthorizationContext. A re-mint yields a token for the same user and app, so the re-mint the authorisation class suggests would only repeat the refusal; the channel waits for an admin to fix the channel file or the app's access.",
    ),
    isa(
        10016,
        PauseChannel,
        "A header was refused. byocd checks its headers before sending and takes OrgId and AuthorizationContext from configuration, so every call on the channel would be refused alike; dead-lettering each in turn would flood alerts and break the order of the queue.",
    ),
    isa(
        10019,
        Retry,
        "The org is read-only while Salesforce migrates it and asks to try again later; it comes back by itself. A migration that outlasts the retry schedule leaves dead letters that `byocd outbox retry` sends again.",
    ),
    isa(
        10022,
        DeadLetterAlert,
        "Only consent updates fail: the channel's consent owner in Salesforce is not Partner, so byocd's consent_owner setting disagrees with the CCD. Messages on the channel still go through, so pausing it would do more harm than good (codes.rs classes this as configuration); the alert asks an admin to align the two.",
    ),
    isa(
        10023,
        DeadLetterAlert,
        "Only consent updates fail, because the channel handles opt-in keywords itself (SupportsKeywords). Messages still go through, so the channel is not paused although codes.rs classes this as configuration; the alert asks for the channel's keyword and consent settings to be made to agree.",
    ),
    isa(
        10025,
        Reconcile,
        "Salesforce has no conversation any more for this channel address and end user, so the session this work belonged to is over. Resending cannot revive it; the end user's next message starts a new conversation.",
    ),
    isa(
        10031,
        PauseChannel,
        "An admin deactivated the channel in Salesforce. Nothing can be delivered until it is active again; the probe notices the reactivation and the channel resumes with its queue intact and in order.",
    ),
    isa(
        10032,
        PauseChannel,
        "The org does not know the queue id that the channel's routing settings name, so every routing request on the channel fails alike. Holding the channel keeps conversations queued, in order, until the setting or the queue is fixed.",
    ),
    isa(
        10036,
        DeadLetterAlert,
        "The participant to remove has already left, but the session itself lives on, so reconciling (which ends the session locally) would be wrong although codes.rs classes the code as not_found. The request has nothing left to do; it is dead-lettered with an alert because byocd should not ask to remove someone who is not there.",
    ),
    isa(
        10050,
        DeadLetterAlert,
        "Only the channel's capability registration (PATCH /capabilities, the one call that names the custom integration) fails: the CCD developer name or namespace does not match the org. Messages on the channel still go through, so pausing it would do more harm than good (codes.rs classes this as configuration); the alert asks for the channel's authorization_context to be checked, and a reload registers again.",
    ),
    isa(
        10055,
        Retry,
        "Salesforce asks for a retry: another change to the conversation got in the way of this one.",
    ),
    isa(
        10056,
        Retry,
        "Salesforce asks for a retry: it aborted processing the conversation part-way.",
    ),
    isa(
        10057,
        DeadLetterAlert,
        "Only conversation-history uploads fail, because the ConversationHistory API is reserved to BYOC for CCaaS orgs. Live messaging is unaffected, so the channel is not paused although codes.rs classes this as configuration; the alert asks for access or for history uploads to be turned off.",
    ),
    isa(
        10058,
        PauseChannel,
        "Salesforce blames the customer org (its set-up or its automation, such as a failing flow or trigger) and says no more. Neither a retry nor a different request cures that; the channel holds its work until an admin has looked, and resumes by itself once a probe goes through.",
    ),
    isa(
        10063,
        DeadLetterAlert,
        "Only history uploads that carry a messagingSession fail, because the org's release cannot take them yet. Other work is unaffected, so the channel is not paused although codes.rs classes this as configuration; the alert asks to upgrade the org or to leave the session out of history uploads.",
    ),
    isa(
        10069,
        PauseChannel,
        "The channel address or the authorization set-up behind it is wrong: a fault of this channel's configuration, so every call on it fails until an admin fixes the channel file or the CCD.",
    ),
    isa(
        10070,
        PauseChannel,
        "The channel address is not configured with the channel's AuthorizationContext; as with 10001, every call on the channel fails until the channel file or the Salesforce set-up is corrected.",
    ),
    isa(
        10071,
        Reconcile,
        "The messaging session no longer exists in Salesforce. It is marked ended here so that the sweeper leaves it alone; there is nothing to send again.",
    ),
    isa(
        10075,
        DeadLetterAlert,
        "Only routing requests that use conferencing fail, because the org's release lacks it; other routing and all messaging work, so the channel is not paused although codes.rs classes this as configuration. The alert asks to upgrade the org or to route with Initial or Transfer.",
    ),
    isa(
        10076,
        DeadLetterAlert,
        "Only clearing a route with a cancelReason fails, because the org's release lacks it; everything else works, so the channel is not paused although codes.rs classes this as configuration. The alert asks to upgrade the org or to omit the reason.",
    ),
    isa(
        10077,
        DeadLetterAlert,
        "Only AgentWork updates with the Conference agent action fail, because the org's release lacks it; everything else works, so the channel is not paused although codes.rs classes this as configuration. The alert asks to upgrade the org or to use Transfer.",
    ),
    isa(
        10086,
        DeadLetterAlert,
        "A Bring Your Own Bot code, from endpoints byocd does not call. Should it appear, pausing a messaging channel would not fix a bot's set-up, so the work is dead-lettered (not paused, as codes.rs's configuration class would suggest) and a human alerted.",
    ),
    isa(
        10087,
        DeadLetterAlert,
        "A Bring Your Own Bot code (the AuthorizationContext does not fit the bot), from endpoints byocd does not call. Pausing a messaging channel would not fix a bot's set-up, so the work is dead-lettered and a human alerted.",
    ),
    isa(
        10088,
        DeadLetterAlert,
        "The bot named in the request is inactive: a matter of that bot, not of the messaging channel, which pausing would hold up for nothing. The work is dead-lettered and the alert asks for the bot to be reactivated or left out.",
    ),
    isa(
        10094,
        Retry,
        "A service behind the Interaction Service timed out; Salesforce asks to try again later.",
    ),
    isa(
        10099,
        DisableOrg,
        "The org lacks permissions the Interaction Service needs. That is a property of the whole org, so every channel of it fails alike until an admin grants them and byocd is reloaded.",
    ),
    isa(
        10104,
        PauseChannel,
        "The integration user may not access MessagingSession records (the errorReason NO_ACCESS says the same). Only an admin can grant that; holding the channel stops a stream of failing calls while other channels carry on, and the probe resumes it once access is granted.",
    ),
    isa(
        10105,
        Reconcile,
        "The messaging end user no longer exists in Salesforce (deleted or merged), so the session cannot go on. It is ended locally; the end user's next message creates a new end user and session.",
    ),
    isa(
        15102,
        DisableOrg,
        "Contact Center as a Service is off for the org, so every partner-routing call of every channel of the org fails alike until an admin turns it on (or the channels stop using partner routing) and byocd is reloaded.",
    ),
    isa(
        15103,
        DeadLetterAlert,
        "One end user is not fully opted in. That is the state of one end user, not of the channel: pausing would hold up everyone else, and resending fails until that end user opts in.",
    ),
    isa(
        15105,
        PauseChannel,
        "A user lacks the Partner Messaging permission. Salesforce does not say whether it means the integration user (then every channel of the org fails) or a rep named in the call; pausing heals itself in both cases once the permission is granted, whereas disabling the org would need a reload and could stop a whole org over one rep.",
    ),
    isa(
        15109,
        DeadLetterAlert,
        "An active AgentWork already exists for this rep and work item, so resending hits it again. When this answers a retry of byocd's own create, the work is in fact with the rep and the caller should count it as done rather than consult this table; anywhere else it is a bug worth an alert.",
    ),
    isa(
        15111,
        Reconcile,
        "No messaging session exists for the work item any more; as with 10071, the session is marked ended here.",
    ),
    isa(
        15112,
        DeadLetterAlert,
        "The rep's current presence status is not tied to the work's service channel: a matter of one rep at one moment. Pausing the channel (as codes.rs's configuration class would suggest) would hold up every other conversation; the alert lets a supervisor fix the presence set-up or route the work elsewhere.",
    ),
    isa(
        20002,
        Retry,
        "A lookup inside Salesforce failed while listing the end user's conversations; the conversation is not known to be missing, and the fault may pass.",
    ),
    isa(
        20004,
        Retry,
        "Salesforce could not find the pod holding the org's permissions: an internal routing failure that passes.",
    ),
    isa(
        25005,
        Reconcile,
        "No messaging end user is found for the work item: the session it belonged to is gone, so it is marked ended here.",
    ),
    isa(
        25006,
        Reconcile,
        "No conversation is found for the work item: the session is over in Salesforce, so it is marked ended here.",
    ),
    isa(
        25007,
        Reconcile,
        "No conversation id is found for the work item: the session is over in Salesforce, so it is marked ended here.",
    ),
    // ── Interaction Service error codes: one row per class for the rest ──────────────────────
    rule(
        Pattern::IsaClass(ErrorClass::Retryable),
        Retry,
        "Salesforce reports a passing fault of its own.",
    ),
    rule(
        Pattern::IsaClass(ErrorClass::Authorisation),
        RemintThenRetry,
        "The token is refused; a fresh one is the cheap first remedy, and a refusal of the fresh one pauses the channel.",
    ),
    rule(
        Pattern::IsaClass(ErrorClass::Configuration),
        PauseChannel,
        "The channel's set-up in Salesforce (its type, provider, address, channel definition, custom integration, contact-center link or service channel) or byocd's configuration of it is wrong. Every call on the channel fails alike until an admin acts, so sending stops, work queues in order, and the probe resumes the channel once it is fixed.",
    ),
    rule(
        Pattern::IsaClass(ErrorClass::BadInput),
        DeadLetterAlert,
        "Salesforce rejects the request itself (a field, an id, a size, a format, a time). The same request would be rejected again, so it is dead-lettered at once; byocd checks requests before sending, so one that reaches Salesforce and is refused is a bug worth an alert.",
    ),
    rule(
        Pattern::IsaClass(ErrorClass::NotFound),
        Reconcile,
        "What the request names is gone in Salesforce; local state is brought in line with that and nothing is sent again.",
    ),
    rule(
        Pattern::IsaUnknownCode,
        Retry,
        "A code missing from Salesforce's list says nothing about its cause; a retry is bounded (it ends in a dead letter and an alert a person reads) and loses nothing. Answers carrying such a code are read by their HTTP status instead (see the ISA HTTP rows).",
    ),
    rule(
        Pattern::IsaRateLimit,
        Retry,
        "Salesforce is shedding load (it documents the message, not a code or status). Wait and send again; byocd also paces its calls per org with orgs.requests_per_second.",
    ),
    // ── errorReason of POST /messagingSession ───────────────────────────────────────────────
    reason(
        "ACTIVE_CONVERSATION_NOT_FOUND",
        Reconcile,
        "No active conversation matches: it was closed in Salesforce, so the session is over. Mark it ended here, as for code 10025.",
    ),
    reason(
        "END_SESSION_FAILED",
        Retry,
        "Ending the session failed, with no hint that the request or the set-up is at fault; try again, bounded by the schedule.",
    ),
    reason(
        "INTERNAL_ERROR",
        Retry,
        "Salesforce failed on its own side, as with code 500.",
    ),
    reason(
        "PERMISSION_DENIED",
        PauseChannel,
        "The integration user or app may not end or inactivate this channel's sessions. Only an admin can grant that; holding the channel avoids a stream of refusals and resumes when a probe goes through.",
    ),
    reason(
        "CHANNEL_ADDRESS_NOT_FOUND",
        PauseChannel,
        "No channel has the address from the channel file (code 10017 says the same): a configuration fault that fails every call on the channel.",
    ),
    reason(
        "SESSION_NOT_FOUND",
        Reconcile,
        "The session no longer exists (code 10071 says the same): mark it ended here and stop sweeping it.",
    ),
    reason(
        "END_USER_NOT_FOUND",
        Reconcile,
        "The messaging end user no longer exists (code 10105 says the same), so the session cannot go on: mark it ended here.",
    ),
    reason(
        "ORG_NOT_FOUND",
        DisableOrg,
        "The OrgId byocd sends, from configuration, names no org: every channel of that org fails alike until the configuration is corrected and reloaded.",
    ),
    reason(
        "CONVERSATION_PRECONDITION_FAILED",
        Retry,
        "Another change to the conversation got in the way; code 10055, its twin, asks for a retry.",
    ),
    reason(
        "CONVERSATION_PROCESSING_ABORTED",
        Retry,
        "Salesforce aborted processing part-way; code 10056, its twin, asks for a retry.",
    ),
    reason(
        "CHANNEL_ADDRESS_IS_INACTIVE",
        PauseChannel,
        "The channel was deactivated in Salesforce (code 10031 says the same); the probe resumes it once it is active again.",
    ),
    reason(
        "CUSTOMER_ERROR",
        PauseChannel,
        "Salesforce blames the customer org, as with code 10058: an admin has to look, and the channel holds its work meanwhile.",
    ),
    reason(
        "NO_ACCESS",
        PauseChannel,
        "The integration user may not access the MessagingSession record (code 10104 says the same); an admin must grant it.",
    ),
    rule(
        Pattern::UnknownErrorReason,
        Retry,
        "A value Salesforce does not document says nothing about its cause. A retry is the choice that is bounded and loses nothing: it ends in a dead letter and an alert a person reads, whereas reconciling could end a live session locally, pausing would stop a whole channel, and dead-lettering at once would give up without a second try.",
    ),
    // ── Interaction Service HTTP statuses without a documented code ─────────────────────────
    rule(
        Pattern::Http(401),
        RemintThenRetry,
        "The token was refused without a code to say why; re-mint once, as for code 10004.",
    ),
    rule(
        Pattern::Http(403),
        PauseChannel,
        "Authenticated but not allowed: a permission or scope is missing in the org or for the channel, which only an admin can grant.",
    ),
    rule(
        Pattern::Http(404),
        PauseChannel,
        "Without an Interaction Service code a 404 means the path was not found, most likely a wrong orgs.scrt_base_url or a proxy in between. Salesforce names a missing conversation or session with a code (10025, 10071, …), so reconciling, as the not_found class codes.rs gives a bare 404 would suggest, could end live sessions.",
    ),
    rule(
        Pattern::Http(408),
        Retry,
        "The request timed out on the way; send it again.",
    ),
    rule(
        Pattern::Http(429),
        Retry,
        "Throttled: wait (at least the Retry-After, if given) and send again.",
    ),
    rule(
        Pattern::HttpRange(400, 499),
        DeadLetterAlert,
        "The server blames the request, and the same request would be blamed again.",
    ),
    rule(
        Pattern::Http(502),
        PauseChannel,
        "A gateway in front of Salesforce got no usable answer: Salesforce is down or unreachable, and every call on the channel would fail alike. Spending each row's retries on an outage would dead-letter a whole backlog after a long incident (the schedule's last step passes in about five hours), so the channel holds its work, in order, spending no attempt, and a probe at most 5 minutes apart finds out when it is back; the backlog then drains in order.",
    ),
    rule(
        Pattern::Http(503),
        PauseChannel,
        "Salesforce is unavailable (an incident or maintenance): every call on the channel would fail alike. As with 502, the channel holds its work in order without spending attempts, and probes find out when Salesforce is back.",
    ),
    rule(
        Pattern::Http(504),
        PauseChannel,
        "A gateway in front of Salesforce timed out waiting for it: an outage, held and probed as with 502 and 503.",
    ),
    rule(
        Pattern::HttpRange(500, 599),
        Retry,
        "The server or a gateway in front of it failed; such faults pass.",
    ),
    rule(
        Pattern::HttpOther,
        Retry,
        "An unexpected answer (1xx, 2xx or 3xx reported as a failure), most likely from something in between; the retry schedule bounds it and its dead letter raises an alert.",
    ),
    // ── 8x8 Chat Apps ───────────────────────────────────────────────────────────────────────
    provider(
        EIGHT_BY_EIGHT,
        Status(429),
        Retry,
        "8x8 throttles beyond its per-sub-account and per-IP limits and says how long to wait in Retry-After, which byocd honours.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Status(408),
        Retry,
        "The request timed out at 8x8; send it again.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        StatusRange(500, 599),
        Retry,
        "8x8 failed on its own side, whatever code the body carries; such faults pass.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("2000"),
        Retry,
        "8x8's internal error, whatever the HTTP status; it passes.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Status(401),
        PauseChannel,
        "8x8 refuses the channel's API key. It is a static key, not a token byocd could re-mint, so nothing changes until the key is fixed in the channel's configuration (then reloaded) or re-enabled at 8x8, which the probe notices.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Status(403),
        PauseChannel,
        "8x8 accepts the API key but forbids the call for this sub-account; every call on the channel fails alike until the account is fixed.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("1200"),
        PauseChannel,
        "8x8's code for an unauthorised key: as for HTTP 401, a static key that only a configuration change or 8x8 can fix.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("1201"),
        PauseChannel,
        "8x8's code for a forbidden call: as for HTTP 403, every call on the channel fails until the account is fixed.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("1001"),
        PauseChannel,
        "The sub-account in the channel's configuration is not valid for the key; every call on the channel fails the same way.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("1014"),
        PauseChannel,
        "8x8 refuses byocd's TLS as insecure; every call fails until the client is upgraded, so the channel waits rather than losing its queue.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Status(426),
        PauseChannel,
        "8x8 asks for a newer TLS version; every call fails until the client is upgraded, so the channel waits rather than losing its queue.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("2002"),
        PauseChannel,
        "8x8 no longer supports the API version byocd calls (base_url in the channel's configuration); every call fails until that is changed.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Code("1002"),
        DeadLetterAlert,
        "The end user's number is not a valid MSISDN: a matter of one end user, so the channel goes on; resending cannot succeed.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        CodeRange(1000, 1999),
        DeadLetterAlert,
        "8x8 rejects a parameter of this one request (invalid parameter, out of range, bulk limit, not found, …); the same request would be rejected again.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        CodeRange(3000, 3999),
        DeadLetterAlert,
        "8x8 rejects the payload of this one request (missing content or media URL, template errors, …); the same payload would be rejected again.",
    ),
    provider(
        EIGHT_BY_EIGHT,
        Any,
        DeadLetterAlert,
        "Any other 8x8 refusal (404, 410, 422, unknown codes) is permanent for this request; it is reported and a human alerted rather than resent.",
    ),
    // ── Kaleyra RCS ─────────────────────────────────────────────────────────────────────────
    provider(
        KALEYRA,
        Status(401),
        PauseChannel,
        "Kaleyra refuses the channel's credentials (api key, SID or Basic credentials). They are static, not a token byocd could re-mint, so nothing changes until they are fixed in configuration (then reloaded) or at Kaleyra, which the probe notices.",
    ),
    provider(
        KALEYRA,
        Status(403),
        PauseChannel,
        "Kaleyra forbids the call for this account; every call on the channel fails alike until the account is fixed.",
    ),
    provider(
        KALEYRA,
        Code("RCS1004"),
        DeadLetterAlert,
        "The RCS platform refused a typing event. A typing indicator is only worth showing now, and a retry would arrive stale and meet the same refusal (Kaleyra's sample is \"Access Denied\"); the dead letter makes a refusal that keeps coming back visible.",
    ),
    provider(
        KALEYRA,
        Status(429),
        Retry,
        "Kaleyra throttles; wait (at least the Retry-After, if given) and send again.",
    ),
    provider(
        KALEYRA,
        Status(500),
        Retry,
        "Kaleyra failed on its own side; such faults pass.",
    ),
    provider(
        KALEYRA,
        Status(502),
        Retry,
        "A gateway in front of Kaleyra failed; such faults pass.",
    ),
    provider(
        KALEYRA,
        Status(503),
        Retry,
        "Kaleyra is temporarily unavailable and says to retry.",
    ),
    provider(
        KALEYRA,
        Status(504),
        Retry,
        "A gateway in front of Kaleyra timed out; send again.",
    ),
    provider(
        KALEYRA,
        Code("1419"),
        PauseChannel,
        "The agent id (from) in the channel's configuration is not a service code of this account: every send on the channel fails alike until it is corrected.",
    ),
    provider(
        KALEYRA,
        Code("1417"),
        DeadLetterAlert,
        "The end user's number is invalid: a matter of one end user, so the channel goes on; resending cannot succeed.",
    ),
    provider(
        KALEYRA,
        Code("1423"),
        DeadLetterAlert,
        "RCS is not enabled for this subscriber: one end user's handset or carrier, not the channel; resending cannot succeed until that changes.",
    ),
    provider(
        KALEYRA,
        CodeRange(1400, 1499),
        DeadLetterAlert,
        "Kaleyra rejects this one request (an invalid or missing field, its format, the method, the TTL); the same request would be rejected again.",
    ),
    provider(
        KALEYRA,
        Any,
        DeadLetterAlert,
        "Any other Kaleyra answer (another 4xx, 501, an unexpected code, a body that is not JSON, an accepted send without a messageId) is permanent: resending might deliver the message twice or meet the same refusal.",
    ),
    // ── No usable answer, from Salesforce or a provider ─────────────────────────────────────
    rule(
        Pattern::Transport(TransportKind::Timeout),
        PauseChannel,
        "No answer in time: the service is down or overwhelmed, and the call may or may not have taken effect. The channel holds its work in order without spending attempts (an outage of hours would otherwise dead-letter the backlog), and a probe at most 5 minutes apart sends it again with the same entry and message ids, so a duplicate can be recognised (see docs/reliability.md).",
    ),
    rule(
        Pattern::Transport(TransportKind::Connect),
        PauseChannel,
        "The service or the network is down and nothing was sent. The channel holds its work in order without spending attempts, and a probe at most 5 minutes apart finds out when it is back.",
    ),
    rule(
        Pattern::Transport(TransportKind::Reset),
        PauseChannel,
        "The connection was cut mid-call: the service is going down or unreachable, and as with a timeout the outcome is unknown. The channel holds its work in order without spending attempts; the probe sends it again with the same ids.",
    ),
    // ── Access-token mints (OAuth JWT bearer flow) ──────────────────────────────────────────
    token(
        "invalid_grant",
        DisableOrg,
        "Salesforce refused the JWT bearer grant: the user is not pre-authorised for the app, the uploaded certificate does not match orgs.private_key_file, orgs.login_url is the wrong audience, or the user is locked out. Every channel of the org shares this token and every new mint is refused the same way, so the org waits for the fix and a reload.",
    ),
    token(
        "invalid_client",
        DisableOrg,
        "orgs.consumer_key names no usable connected app; every mint for the org is refused until it is corrected and reloaded.",
    ),
    token(
        "invalid_client_id",
        DisableOrg,
        "orgs.consumer_key names no connected app; every mint for the org is refused until it is corrected and reloaded.",
    ),
    token(
        "unsupported_grant_type",
        DisableOrg,
        "The token endpoint (orgs.token_url, by default orgs.login_url + /services/oauth2/token) is not a Salesforce token endpoint; every mint is refused until it is corrected and reloaded.",
    ),
    token(
        "invalid_request",
        DisableOrg,
        "The token endpoint cannot read the request (the assertion or a setting behind it); the same request would be refused again until the org's settings are corrected and reloaded.",
    ),
    token(
        "inactive_user",
        DisableOrg,
        "The integration user (orgs.username) is deactivated; nothing works for the org until an admin reactivates it or another user is configured.",
    ),
    token(
        "inactive_org",
        DisableOrg,
        "Salesforce reports the org itself as inactive; nothing works for it until that changes and byocd is reloaded.",
    ),
    token(
        "rate_limit_exceeded",
        Retry,
        "Too many token requests; the org's mint backoff spaces them out and the work retries on its schedule.",
    ),
    token(
        "server_error",
        Retry,
        "The token endpoint failed on its own side; such faults pass.",
    ),
    token(
        "temporarily_unavailable",
        PauseChannel,
        "The token endpoint is unavailable (an incident or maintenance): no call on the channel can be authorised until it is back, so the channel holds its work in order without spending attempts, and probes find out when it is.",
    ),
    token(
        "unreachable",
        PauseChannel,
        "The token endpoint gave no usable answer (network, or a body that is not OAuth): Salesforce is down or unreachable. The channel holds its work in order without spending attempts (an outage of hours would otherwise dead-letter the backlog); probes, and the org's mint backoff (5 s doubling to 5 min), space the attempts.",
    ),
    token(
        "paused",
        Retry,
        "Mints for the org are paused after recent failures; the pause ends by itself and the work retries on its schedule (the failure that caused the pause has its own row).",
    ),
    token(
        "signing",
        DisableOrg,
        "orgs.private_key_file cannot sign the assertion (unreadable, or not an RSA key), so no token can be minted for the org until the key is replaced and byocd reloaded.",
    ),
    token(
        "store",
        Retry,
        "byocd's own database failed while reading or writing the org's token; that passes, and the work retries on its schedule.",
    ),
    token(
        "unknown_org",
        DeadLetterAlert,
        "The work names an org that is not configured (byocd config check prevents this); there is no org to disable and no token to mint, so the work is dead-lettered and a human alerted.",
    ),
    rule(
        Pattern::TokenOther,
        Retry,
        "Any other mint failure: a bounded retry, spaced by the org's mint backoff, ends in a dead letter and an alert if it does not pass.",
    ),
    // ── Last resort ─────────────────────────────────────────────────────────────────────────
    rule(
        Pattern::Other,
        Retry,
        "Nothing above matches (a provider byocd does not know, say): a bounded retry ends in a dead letter and an alert a person reads.",
    ),
];

/// Every row of the table, in the order they are tried.
pub fn all_rules() -> &'static [Rule] {
    RULES
}

/// The row that decides what to do about `trigger`. Never fails: every family of triggers ends
/// in a documented default row, and the table's last row matches anything.
pub fn remedy(trigger: &Trigger) -> &'static Rule {
    RULES
        .iter()
        .find(|rule| rule.when.matches(trigger))
        .unwrap_or(&RULES[RULES.len() - 1])
}

/// The whole table in Markdown: one line per row, trigger, action and why — what
/// `byocd explain --all` prints and docs/remediation.md shows.
pub fn render_table() -> String {
    let mut out = String::from("| trigger | action | why |\n|---|---|---|\n");
    for rule in RULES {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            cell(&rule.when.label()),
            rule.action,
            cell(rule.why)
        );
    }
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// What `byocd explain CODE` prints for `trigger`: what it is (with the code's name and
/// summary where it is an Interaction Service code), the action, what byocd does, and why.
pub fn explain(trigger: &Trigger) -> String {
    let rule = remedy(trigger);
    let mut out = String::new();
    let _ = writeln!(out, "{trigger}: {}", trigger.meaning());
    if let Trigger::IsaCode(code) = trigger
        && let Some(info) = codes::lookup(*code)
    {
        field(&mut out, "name", info.name);
        field(&mut out, "meaning", info.summary);
        field(&mut out, "class", info.class.as_str());
    }
    if let Trigger::ErrorReason(reason) = trigger {
        field(&mut out, "class", reason.class().as_str());
    }
    field(&mut out, "action", rule.action.as_str());
    field(&mut out, "byocd", rule.action.description());
    field(&mut out, "why", rule.why);
    field(&mut out, "rule", &rule.when.label());
    out
}

/// Width of the text after the label in `explain`'s output.
const WRAP: usize = 88;

/// `label:` then `text` wrapped at word boundaries, continuation lines indented.
fn field(out: &mut String, label: &str, text: &str) {
    const INDENT: usize = 11;
    let _ = write!(out, "  {:<width$}", format!("{label}:"), width = INDENT - 2);
    let mut column = 0;
    for word in text.split_whitespace() {
        if column > 0 && column + 1 + word.len() > WRAP {
            let _ = write!(out, "\n{:INDENT$}", "");
            column = 0;
        }
        if column > 0 {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.chars().count();
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_labels_are_the_documented_ones() {
        let labels: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            labels,
            [
                "retry",
                "remint_then_retry",
                "reconcile",
                "pause_channel",
                "disable_org",
                "dead_letter"
            ]
        );
        for action in Action::ALL {
            assert!(!action.description().is_empty());
        }
        assert_eq!(Action::Reconcile.severity(), Severity::Info);
        assert_eq!(Action::DeadLetterAlert.severity(), Severity::Alert);
    }

    #[test]
    fn every_row_is_reachable_and_explained() {
        // A row hidden behind an earlier, more general one would be dead documentation.
        let samples: Vec<Trigger> = RULES.iter().filter_map(sample).collect();
        for trigger in &samples {
            let rule = remedy(trigger);
            assert!(rule.when.matches(trigger));
        }
        for (index, rule) in RULES.iter().enumerate() {
            assert!(!rule.why.is_empty(), "row {index}");
            assert!(!rule.why.contains('\n'), "row {index}");
            if let Some(trigger) = sample(rule) {
                assert_eq!(
                    remedy(&trigger),
                    rule,
                    "row {index} ({}) is shadowed",
                    rule.when.label()
                );
            }
        }
    }

    /// A trigger that the row is meant to decide, for rows where one is easy to build.
    fn sample(rule: &Rule) -> Option<Trigger> {
        Some(match rule.when {
            Pattern::IsaCode(code) => Trigger::IsaCode(code),
            Pattern::IsaClass(class) => Trigger::IsaCode(
                codes::all()
                    .iter()
                    .find(|info| info.class == class && !has_own_row(info.code))?
                    .code,
            ),
            Pattern::IsaUnknownCode => Trigger::IsaCode(99_999),
            Pattern::IsaRateLimit => Trigger::IsaRateLimit,
            Pattern::ErrorReason(value) => Trigger::ErrorReason(ErrorReason::parse(value)),
            Pattern::UnknownErrorReason => Trigger::ErrorReason(ErrorReason::parse("NEW_REASON")),
            Pattern::Http(status) => Trigger::Http(status),
            Pattern::HttpRange(_, high) => Trigger::Http(high - 1),
            Pattern::HttpOther => Trigger::Http(302),
            Pattern::Provider { provider, on } => {
                let (status, code) = match on {
                    ProviderMatch::Status(status) => (Some(status), None),
                    ProviderMatch::StatusRange(low, _) => (Some(low + 2), None),
                    ProviderMatch::Code(code) => (None, Some(code.to_owned())),
                    ProviderMatch::CodeRange(low, _) => (None, Some((low + 98).to_string())),
                    ProviderMatch::Any => (Some(418), Some("X".to_owned())),
                };
                Trigger::Provider {
                    provider,
                    status,
                    code,
                }
            }
            Pattern::Transport(kind) => Trigger::Transport(kind),
            Pattern::Token(error) => Trigger::TokenEndpoint(error.to_owned()),
            Pattern::TokenOther => Trigger::TokenEndpoint("something_new".to_owned()),
            Pattern::Other => Trigger::Provider {
                provider: "elsewhere",
                status: None,
                code: None,
            },
        })
    }

    #[test]
    fn canonical_forms_read_back() {
        let triggers = [
            Trigger::IsaCode(10004),
            Trigger::IsaCode(500),
            Trigger::IsaCode(99_999),
            Trigger::IsaCode(418),
            Trigger::IsaRateLimit,
            Trigger::ErrorReason(ErrorReason::SessionNotFound),
            Trigger::ErrorReason(ErrorReason::parse("SOMETHING_NEW")),
            Trigger::ErrorReason(ErrorReason::parse("lower-case")),
            Trigger::Http(503),
            Trigger::Provider {
                provider: EIGHT_BY_EIGHT,
                status: None,
                code: Some("1002".into()),
            },
            Trigger::Provider {
                provider: EIGHT_BY_EIGHT,
                status: Some(429),
                code: None,
            },
            Trigger::Provider {
                provider: EIGHT_BY_EIGHT,
                status: Some(400),
                code: Some("1002".into()),
            },
            Trigger::Provider {
                provider: KALEYRA,
                status: None,
                code: Some("RCS1004".into()),
            },
            Trigger::Provider {
                provider: KALEYRA,
                status: None,
                code: Some("429".into()),
            },
            Trigger::Provider {
                provider: KALEYRA,
                status: None,
                code: None,
            },
            Trigger::Transport(TransportKind::Reset),
            Trigger::TokenEndpoint("invalid_grant".into()),
            Trigger::TokenEndpoint("whatever".into()),
        ];
        for trigger in triggers {
            let text = trigger.to_string();
            assert_eq!(Trigger::parse(&text), Ok(trigger.clone()), "{text}");
        }
    }

    #[test]
    fn shorthand_forms() {
        assert_eq!(Trigger::parse("503"), Ok(Trigger::Http(503)));
        assert_eq!(Trigger::parse("500"), Ok(Trigger::IsaCode(500)));
        assert_eq!(Trigger::parse("isa:503"), Ok(Trigger::IsaCode(503)));
        assert_eq!(
            Trigger::parse("8x8:429"),
            Ok(Trigger::Provider {
                provider: EIGHT_BY_EIGHT,
                status: Some(429),
                code: None
            })
        );
        assert_eq!(
            Trigger::parse("KALEYRA:rcs1004").map(|t| remedy(&t).action),
            Ok(Action::DeadLetterAlert)
        );
        assert_eq!(
            Trigger::parse("invalid_grant"),
            Ok(Trigger::TokenEndpoint("invalid_grant".into()))
        );
        assert_eq!(
            Trigger::parse("Timeout"),
            Ok(Trigger::Transport(TransportKind::Timeout))
        );
        for bad in [
            "",
            "nonsense",
            "http:abc",
            "8x8:",
            "8x8:http:",
            "sms:12",
            "token:",
        ] {
            assert!(Trigger::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn isa_answers_read_like_classify() {
        assert_eq!(
            Trigger::from_isa_answer(400, Some(10004), None),
            Trigger::IsaCode(10004)
        );
        assert_eq!(
            Trigger::from_isa_answer(429, None, Some(codes::RATE_LIMIT_MESSAGE)),
            Trigger::IsaRateLimit
        );
        assert_eq!(
            Trigger::from_isa_answer(401, Some(99_999), None),
            Trigger::Http(401)
        );
    }

    #[test]
    fn range_labels() {
        assert_eq!(range_label(500, 599), "5xx");
        assert_eq!(range_label(1400, 1499), "14xx");
        assert_eq!(range_label(1000, 1999), "1xxx");
        assert_eq!(range_label(10, 20), "10–20");
    }

    #[test]
    fn explain_wraps_and_names_the_code() {
        let text = explain(&Trigger::IsaCode(10004));
        assert!(
            text.starts_with("10004: an Interaction Service error code\n"),
            "{text}"
        );
        assert!(text.contains("  name:    InvalidAccessToken\n"), "{text}");
        assert!(text.contains("  action:  remint_then_retry\n"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 11 + WRAP + 20, "{line}");
        }
    }
}
