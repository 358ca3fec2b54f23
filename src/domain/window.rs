//! Whether one part of a rep's message may go to the end user now, and in what form: the rules
//! of rep-initiated (proactive) messages, decided when the part is delivered.
//!
//! | situation | the part |
//! |---|---|
//! | Salesforce last reported the end user's consent on the channel as `OptOut` | not sent: Salesforce gets `MessageDeliveryFailed` ([`CODE_OPTED_OUT`]), audited `outbound.refused_opted_out` |
//! | 8x8 WhatsApp, the end user's newest message (by 8x8's own timestamp) less than [`WHATSAPP_WINDOW`] old | sent as it is |
//! | 8x8 WhatsApp, no such message (never wrote, or 24 hours or more ago), text, `[whatsapp_template]` configured | the template is sent instead, its body parameters filled from the rep's text ([`template_parameter`]); audited `outbound.template_sent` |
//! | 8x8 WhatsApp, outside the window, a file, or text with no template configured | not sent: `MessageDeliveryFailed` ([`CODE_WINDOW_CLOSED`]) naming the rule, audited `outbound.window_closed` |
//! | RCS (8x8 or Kaleyra): no such window | sent as it is |
//!
//! An opt-in (`OptIn`) lifts the opt-out; the window rule still applies to it. The window is
//! per end user and channel: the newest `last_inbound_at` of the conversation's sessions (a
//! conversation is one end user on one channel), which the inbound intake stamps with the
//! provider's timestamp of each message, durably, on both databases.

use chrono::{DateTime, Duration, Utc};

use crate::config::{
    ChannelConfig, EightByEightChannel, MAX_TEMPLATE_PARAMETER_CHARS, Provider, TemplateParameter,
};

/// WhatsApp's customer-service window: free-form messages only within 24 hours of the end
/// user's last message.
pub const WHATSAPP_WINDOW: Duration = Duration::hours(24);

/// `errorCode` of the `MessageDeliveryFailed` for a part refused outside the window.
pub const CODE_WINDOW_CLOSED: &str = "whatsapp_24h_window";

/// `errorCode` of the `MessageDeliveryFailed` for a part refused after an opt-out.
pub const CODE_OPTED_OUT: &str = "end_user_opted_out";

/// What one part of a rep message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text.
    Text(&'a str),
    /// A file.
    File,
}

/// What becomes of the part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sent as it is.
    Send,
    /// Outside the window: the channel's approved template is sent instead.
    Template {
        /// The template's name.
        name: String,
        /// Its language code.
        language: String,
        /// The body parameters, in order.
        parameters: Vec<String>,
    },
    /// Not sent; Salesforce is told with `MessageDeliveryFailed`.
    Refuse {
        /// The audit kind of the refusal.
        audit_kind: &'static str,
        /// The `errorCode` sent to Salesforce.
        code: &'static str,
        /// Why, naming the rule (no personal data).
        reason: String,
    },
}

/// Whether the channel is an 8x8 WhatsApp channel (the only one with the 24-hour window).
pub fn has_window(channel: &ChannelConfig) -> bool {
    matches!(&channel.provider, Provider::EightByEight(a) if a.channel == EightByEightChannel::Whatsapp)
}

/// Decides the part's fate: `consent` as Salesforce last reported it, `newest_inbound` the
/// provider's timestamp of the end user's newest message on the channel, `now` the daemon's
/// clock.
pub fn decide(
    channel: &ChannelConfig,
    consent: Option<&str>,
    newest_inbound: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    part: Part<'_>,
) -> Decision {
    if consent == Some("OptOut") {
        return Decision::Refuse {
            audit_kind: "outbound.refused_opted_out",
            code: CODE_OPTED_OUT,
            reason: "the end user opted out of messages on this channel \
                     (EndUserConsentUpdated OptOut); nothing is sent until they opt in"
                .into(),
        };
    }
    if !has_window(channel) {
        return Decision::Send;
    }
    let age = newest_inbound.map(|at| now - at);
    if age.is_some_and(|age| age < WHATSAPP_WINDOW) {
        return Decision::Send;
    }
    let since = match age {
        Some(age) => format!(
            "the end user's newest message is {} h {:02} min old",
            age.num_hours(),
            age.num_minutes() % 60
        ),
        None => "the end user has not written on this channel".into(),
    };
    match (part, &channel.whatsapp_template) {
        (Part::Text(text), Some(template)) => Decision::Template {
            name: template.name.clone(),
            language: template.language.clone(),
            parameters: template
                .body_parameters
                .iter()
                .map(|p| match p {
                    TemplateParameter::Text => template_parameter(text),
                    TemplateParameter::Literal(fixed) => fixed.clone(),
                })
                .collect(),
        },
        (Part::Text(_), None) => Decision::Refuse {
            audit_kind: "outbound.window_closed",
            code: CODE_WINDOW_CLOSED,
            reason: format!(
                "not sent: WhatsApp's 24-hour customer-service window is closed ({since}) and \
                 the channel has no [whatsapp_template] to send instead of free-form text"
            ),
        },
        (Part::File, _) => Decision::Refuse {
            audit_kind: "outbound.window_closed",
            code: CODE_WINDOW_CLOSED,
            reason: format!(
                "not sent: WhatsApp's 24-hour customer-service window is closed ({since}) and \
                 a file is not a template message"
            ),
        },
    }
}

/// The rep's text as a template body parameter: WhatsApp refuses line breaks, tabs and more
/// than four spaces in a row in a parameter, so every run of white space becomes one space;
/// cut to [`MAX_TEMPLATE_PARAMETER_CHARS`] characters (the last one `…`); an empty result is
/// `…`.
pub fn template_parameter(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        return "…".into();
    }
    if joined.chars().count() <= MAX_TEMPLATE_PARAMETER_CHARS {
        return joined;
    }
    let mut cut: String = joined
        .chars()
        .take(MAX_TEMPLATE_PARAMETER_CHARS - 1)
        .collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_lose_line_breaks_and_long_runs_of_spaces_and_are_cut() {
        assert_eq!(
            template_parameter("Hello,\n\tyour order     is ready  "),
            "Hello, your order is ready"
        );
        assert_eq!(template_parameter(" \n "), "…");
        let long = "a".repeat(2000);
        let cut = template_parameter(&long);
        assert_eq!(cut.chars().count(), MAX_TEMPLATE_PARAMETER_CHARS);
        assert!(cut.ends_with('…'));
    }
}
