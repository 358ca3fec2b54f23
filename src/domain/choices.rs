//! A rep's choices in the end user's channel, and the end user's answer back to the rep: the
//! rules of docs/providers.md ("Choices: buttons, lists and suggestions").
//!
//! - [`render`] turns a Salesforce `ChoicesMessage` (`Buttons`, `QuickReplies`, `ListPicker`)
//!   into the channel's native form within the provider's limits — WhatsApp reply buttons (at
//!   most 3) or a one-section list (at most 10 rows) through 8x8, RCS suggested replies through
//!   8x8 or Kaleyra — truncating over-long titles, or into numbered text when the native form
//!   cannot carry it. What it returns is what was sent: the relay records it so that the answer
//!   can be matched.
//! - A `Carousel` is rendered by `domain::carousel` (RCS cards or numbered text), a
//!   `TimePicker` by `domain::time_picker` (its slots as a list picker's options); both are
//!   answered the same way.
//! - [`answer`] finds the option an end user picked: a tapped button, row or suggestion by the
//!   id that was sent, or a typed number ("2") answering numbered text.

use serde::{Deserialize, Serialize};

use crate::{
    config::{ChannelConfig, EightByEightChannel, Provider as ProviderConfig},
    providers::{RichChoice, RichMessage},
    salesforce::events::Choices,
};

/// Most WhatsApp reply buttons in one message.
pub const WA_MAX_BUTTONS: usize = 3;
/// Longest WhatsApp reply-button title, in characters.
pub const WA_BUTTON_TITLE_CHARS: usize = 20;
/// Longest WhatsApp button or row id.
pub const WA_ID_CHARS: usize = 200;
/// Most rows of a WhatsApp list message (over all its sections).
pub const WA_MAX_ROWS: usize = 10;
/// Longest WhatsApp list-row title, in characters.
pub const WA_ROW_TITLE_CHARS: usize = 24;
/// Longest WhatsApp list button label, in characters.
pub const WA_LIST_BUTTON_CHARS: usize = 20;
/// Longest body text of a WhatsApp interactive message, in characters.
pub const WA_BODY_CHARS: usize = 1024;
/// The label of the button that opens a WhatsApp list.
pub const WA_LIST_BUTTON: &str = "Choose";
/// Longest RCS suggestion text, in characters.
pub const RCS_SUGGESTION_CHARS: usize = 25;
/// Longest RCS postback data.
pub const RCS_POSTBACK_CHARS: usize = 2048;
/// Most suggestions in one 8x8 RCS message (`content.suggestions`, ≤10).
pub const RCS_8X8_MAX_SUGGESTIONS: usize = 10;
/// Most suggestions in one Kaleyra RCS message (RCS chip lists hold up to 11).
pub const RCS_KALEYRA_MAX_SUGGESTIONS: usize = 11;
/// Longest RCS text with suggestions, in characters (8x8 RCS plain text).
pub const RCS_TEXT_CHARS: usize = 3072;

/// What a channel can show: set by its provider and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// 8x8 WhatsApp.
    EightByEightWhatsapp,
    /// 8x8 RCS.
    EightByEightRcs,
    /// Kaleyra RCS.
    KaleyraRcs,
}

impl ChannelKind {
    /// The kind of a configured channel.
    pub fn of(channel: &ChannelConfig) -> Self {
        match &channel.provider {
            ProviderConfig::EightByEight(account) => match account.channel {
                EightByEightChannel::Whatsapp => Self::EightByEightWhatsapp,
                EightByEightChannel::Rcs => Self::EightByEightRcs,
            },
            ProviderConfig::Kaleyra(_) => Self::KaleyraRcs,
        }
    }
}

/// How the choices went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// WhatsApp reply buttons.
    Buttons,
    /// A WhatsApp list.
    List,
    /// RCS suggested replies.
    Suggestions,
    /// An RCS carousel of rich cards (src/domain/carousel.rs).
    Carousel,
    /// Numbered text.
    Text,
}

impl Form {
    /// The name stored with the prompt.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Buttons => "buttons",
            Self::List => "list",
            Self::Suggestions => "suggestions",
            Self::Carousel => "carousel",
            Self::Text => "text",
        }
    }
}

/// One option as it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentOption {
    /// Its number in the numbered text (1, 2, …), in Salesforce's order.
    pub number: usize,
    /// Salesforce's `optionIdentifier`.
    pub option_identifier: String,
    /// The id sent to the provider (button, row or postback id); `None` in numbered text.
    pub sent_id: Option<String>,
    /// The title as the end user saw it (after truncation).
    pub title: String,
}

/// What [`render`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The native message, or `None` for numbered text.
    pub native: Option<RichMessage>,
    /// The numbered text, when there is no native message.
    pub text: String,
    /// The form.
    pub form: Form,
    /// The options as sent.
    pub options: Vec<SentOption>,
    /// Why the native form was not used, or what was truncated (for the audit trail).
    pub notes: Vec<String>,
}

/// Cuts `text` to `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The numbered-text form: the question, then one line per option, then how to answer.
pub fn numbered_text(choices: &Choices) -> String {
    let mut text = choices.text.trim().to_owned();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    for (n, option) in (1..).zip(&choices.options) {
        text.push_str(&format!("{n}. {}\n", option.title.trim()));
    }
    text.push_str("Reply with the number of your choice.");
    text
}

/// The id sent for option `n`: Salesforce's identifier when it fits, else `opt-<n>`.
pub(crate) fn sent_id(identifier: &str, n: usize, max: usize) -> String {
    if !identifier.is_empty() && identifier.chars().count() <= max {
        identifier.to_owned()
    } else {
        format!("opt-{n}")
    }
}

/// The options with titles cut to `max`; `None` when cutting makes two titles the same (the
/// end user could not tell them apart), or a title is empty.
fn titled(
    choices: &Choices,
    max: usize,
    id_max: usize,
    notes: &mut Vec<String>,
) -> Option<Vec<SentOption>> {
    let mut out: Vec<SentOption> = Vec::new();
    for (n, option) in (1..).zip(&choices.options) {
        let title = truncate(option.title.trim(), max);
        if title.is_empty() || out.iter().any(|o| o.title == title) {
            notes.push(format!(
                "option {n}: its title is empty or not distinct within {max} characters"
            ));
            return None;
        }
        if title != option.title.trim() {
            notes.push(format!("option {n}: title cut to {max} characters"));
        }
        out.push(SentOption {
            number: n,
            option_identifier: option.id.clone(),
            sent_id: Some(sent_id(&option.id, n, id_max)),
            title,
        });
    }
    Some(out)
}

fn choices_of(options: &[SentOption]) -> Vec<RichChoice> {
    options
        .iter()
        .map(|o| RichChoice {
            id: o.sent_id.clone().unwrap_or_default(),
            title: o.title.clone(),
        })
        .collect()
}

/// The form a rep's choices take on a channel of `kind`.
pub fn render(choices: &Choices, kind: ChannelKind) -> Rendered {
    if choices.format == "Carousel" {
        return crate::domain::carousel::render(choices, kind);
    }
    if choices.format == "TimePicker" {
        return crate::domain::time_picker::render(choices, kind);
    }
    let mut notes = Vec::new();
    let count = choices.options.len();
    let body = choices.text.trim();
    let native = match kind {
        ChannelKind::EightByEightWhatsapp => {
            let list_only = choices.format == "ListPicker";
            if body.is_empty() {
                notes.push("WhatsApp interactive messages need a body text".into());
                None
            } else if body.chars().count() > WA_BODY_CHARS {
                notes.push(format!(
                    "the question is longer than WhatsApp's {WA_BODY_CHARS} characters"
                ));
                None
            } else if !list_only && count <= WA_MAX_BUTTONS {
                titled(choices, WA_BUTTON_TITLE_CHARS, WA_ID_CHARS, &mut notes).map(|options| {
                    (
                        RichMessage::Buttons {
                            body: body.to_owned(),
                            buttons: choices_of(&options),
                        },
                        Form::Buttons,
                        options,
                    )
                })
            } else if count <= WA_MAX_ROWS {
                titled(choices, WA_ROW_TITLE_CHARS, WA_ID_CHARS, &mut notes).map(|options| {
                    (
                        RichMessage::List {
                            body: body.to_owned(),
                            button: truncate(WA_LIST_BUTTON, WA_LIST_BUTTON_CHARS),
                            rows: choices_of(&options),
                        },
                        Form::List,
                        options,
                    )
                })
            } else {
                notes.push(format!(
                    "{count} options: a WhatsApp list holds at most {WA_MAX_ROWS}"
                ));
                None
            }
        }
        ChannelKind::EightByEightRcs | ChannelKind::KaleyraRcs => {
            let max = if kind == ChannelKind::KaleyraRcs {
                RCS_KALEYRA_MAX_SUGGESTIONS
            } else {
                RCS_8X8_MAX_SUGGESTIONS
            };
            if body.is_empty() || body.chars().count() > RCS_TEXT_CHARS {
                notes.push(format!(
                    "RCS suggestions need a text of 1 to {RCS_TEXT_CHARS} characters"
                ));
                None
            } else if count > max {
                notes.push(format!(
                    "{count} options: this RCS channel shows at most {max} suggestions"
                ));
                None
            } else {
                titled(
                    choices,
                    RCS_SUGGESTION_CHARS,
                    RCS_POSTBACK_CHARS,
                    &mut notes,
                )
                .map(|options| {
                    (
                        RichMessage::Suggestions {
                            text: body.to_owned(),
                            replies: choices_of(&options),
                        },
                        Form::Suggestions,
                        options,
                    )
                })
            }
        }
    };
    match native {
        Some((message, form, options)) => Rendered {
            native: Some(message),
            text: String::new(),
            form,
            options,
            notes,
        },
        None => Rendered::numbered(choices, numbered_text(choices), notes),
    }
}

impl Rendered {
    /// The numbered-text form `text` of `choices`: every option by its number, no id sent.
    pub fn numbered(choices: &Choices, text: String, notes: Vec<String>) -> Self {
        Self {
            native: None,
            text,
            form: Form::Text,
            options: (1..)
                .zip(&choices.options)
                .map(|(n, o)| SentOption {
                    number: n,
                    option_identifier: o.id.clone(),
                    sent_id: None,
                    title: o.title.trim().to_owned(),
                })
                .collect(),
            notes,
        }
    }
}

/// What an end user's message may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A tapped button, row or suggestion: its id (when the provider gave one) and title.
    Picked {
        /// The id that came back.
        id: Option<&'a str>,
        /// The title shown.
        title: &'a str,
    },
    /// Text typed by the end user.
    Typed(&'a str),
}

/// The option a reply picks among `options` (sent in `form`), if any: a tap by the id that was
/// sent (or, without an id, by its exact title); typed text only when the choices went out as
/// numbered text and the text is one of their numbers ("2", "2.", " 2 ").
pub fn answer<'o>(
    reply: Reply<'_>,
    form: &Form,
    options: &'o [SentOption],
) -> Option<&'o SentOption> {
    match reply {
        Reply::Picked { id: Some(id), .. } => {
            options.iter().find(|o| o.sent_id.as_deref() == Some(id))
        }
        Reply::Picked { id: None, title } => options.iter().find(|o| o.title == title),
        Reply::Typed(text) if *form == Form::Text => {
            let digits = text.trim().trim_end_matches(['.', ')']);
            let n: usize = digits.parse().ok()?;
            options.iter().find(|o| o.number == n)
        }
        Reply::Typed(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::events::ChoiceOption;

    fn choices(format: &str, titles: &[&str]) -> Choices {
        Choices {
            message_id: "m-1".into(),
            format: format.into(),
            text: "Which one?".into(),
            options: titles
                .iter()
                .enumerate()
                .map(|(i, t)| ChoiceOption {
                    id: format!("id-{i}"),
                    title: (*t).into(),
                })
                .collect(),
            cards: Vec::new(),
            time_picker: None,
        }
    }

    #[test]
    fn whatsapp_takes_three_buttons_then_a_list_then_numbered_text() {
        let three = render(
            &choices("Buttons", &["A", "B", "C"]),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(three.form, Form::Buttons);
        let four = render(
            &choices("Buttons", &["A", "B", "C", "D"]),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(four.form, Form::List);
        let titles: Vec<String> = (0..11).map(|i| format!("T{i}")).collect();
        let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
        let eleven = render(
            &choices("Buttons", &refs),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(eleven.form, Form::Text);
        assert!(eleven.text.starts_with("Which one?\n\n1. T0\n2. T1\n"));
        assert!(
            eleven
                .text
                .ends_with("11. T10\nReply with the number of your choice.")
        );
        let list = render(
            &choices("ListPicker", &["A"]),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(list.form, Form::List);
    }

    #[test]
    fn titles_are_cut_and_fall_back_when_no_longer_distinct() {
        let cut = render(
            &choices("Buttons", &["A very long button title indeed", "B"]),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(cut.options[0].title, "A very long button …");
        assert_eq!(cut.options[0].title.chars().count(), 20);
        let same = render(
            &choices(
                "Buttons",
                &[
                    "Appointment on Monday morning",
                    "Appointment on Monday evening",
                ],
            ),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(same.form, Form::Text);
        let rcs = render(
            &choices("QuickReplies", &["Twenty-six characters long"]),
            ChannelKind::KaleyraRcs,
        );
        assert_eq!(rcs.options[0].title, "Twenty-six characters lo…");
    }

    #[test]
    fn answers_are_matched_by_id_title_or_typed_number() {
        let sent = render(
            &choices("Buttons", &["Yes", "No"]),
            ChannelKind::EightByEightWhatsapp,
        );
        let picked = answer(
            Reply::Picked {
                id: Some("id-1"),
                title: "No",
            },
            &sent.form,
            &sent.options,
        );
        assert_eq!(picked.map(|o| o.option_identifier.as_str()), Some("id-1"));
        assert_eq!(answer(Reply::Typed("2"), &sent.form, &sent.options), None);
        let text = render(
            &choices("Buttons", &["Yes", "No"]),
            ChannelKind::EightByEightWhatsapp,
        );
        let text = Rendered {
            form: Form::Text,
            ..text
        };
        let typed = answer(Reply::Typed(" 2. "), &text.form, &text.options);
        assert_eq!(typed.map(|o| o.number), Some(2));
        assert_eq!(answer(Reply::Typed("3"), &text.form, &text.options), None);
        assert_eq!(answer(Reply::Typed("two"), &text.form, &text.options), None);
    }
}
