//! A rep's `Carousel` (a `ChoicesMessage` of cards, each with a title, perhaps a subtitle and
//! an image, and its options and links) on each channel kind — the rules of docs/providers.md
//! ("Carousels"):
//!
//! - **RCS** (8x8 RCS, Kaleyra): a carousel of vertical rich cards, one card per item: the
//!   item's title (cut to 200 characters), its subtitle as the description (cut to 2,000), its
//!   image, and one suggestion per interaction — an option as a suggested reply (text cut to 25
//!   characters; its identifier as the postback data, so a tap names it), a link as an action
//!   opening the URL. One card goes as a standalone rich card. Both providers take 2 to 10
//!   cards and at most 4 suggestions per card, and need an https image on every card.
//! - Otherwise, and on WhatsApp (no carousel outside templates), **numbered text**: the title,
//!   then each card's title and subtitle with its options numbered across the whole carousel
//!   and its links as `title: URL`. A typed number answers as for any numbered choices.
//!
//! The carousel's own `title` has no place in an RCS carousel: it is not shown there (noted in
//! the audit trail); the numbered text starts with it.

use crate::{
    domain::{
        choices::{
            ChannelKind, Form, RCS_POSTBACK_CHARS, RCS_SUGGESTION_CHARS, Rendered, SentOption,
            sent_id, truncate,
        },
        links::{CARD_DESCRIPTION_CHARS, CARD_TITLE_CHARS, OPEN_POSTBACK, URL_CHARS},
    },
    providers::{Card, CardSuggestion, RichMessage},
    salesforce::events::{CardAction, Choices},
};

/// Most cards in one RCS carousel (8x8 `cards` maxItems, Kaleyra's payload table).
pub const MAX_CARDS: usize = 10;
/// Most suggestions on one RCS card.
pub const MAX_CARD_SUGGESTIONS: usize = 4;

/// The numbered-text form of a carousel.
pub fn text(choices: &Choices) -> String {
    let mut blocks = Vec::new();
    if !choices.text.trim().is_empty() {
        blocks.push(choices.text.trim().to_owned());
    }
    for card in &choices.cards {
        let mut block = card.title.trim().to_owned();
        if let Some(subtitle) = &card.subtitle {
            block.push_str(&format!(" — {}", subtitle.trim()));
        }
        for action in &card.actions {
            match action {
                CardAction::Option(i) => {
                    if let Some(option) = choices.options.get(*i) {
                        block.push_str(&format!("\n{}. {}", i + 1, option.title.trim()));
                    }
                }
                CardAction::Link { title, url } => {
                    block.push_str(&format!("\n{}: {url}", title.trim()));
                }
            }
        }
        blocks.push(block);
    }
    let mut text = blocks.join("\n\n");
    if !choices.options.is_empty() {
        text.push_str("\n\nReply with the number of your choice.");
    }
    text
}

/// The form of a carousel on a channel of `kind`.
pub fn render(choices: &Choices, kind: ChannelKind) -> Rendered {
    let mut notes = Vec::new();
    let native = match kind {
        ChannelKind::EightByEightWhatsapp => {
            notes.push("WhatsApp shows carousels only in templates: numbered text".into());
            None
        }
        ChannelKind::EightByEightRcs | ChannelKind::KaleyraRcs => rcs(choices, &mut notes),
    };
    match native {
        Some((cards, options)) => {
            if !choices.text.trim().is_empty() {
                notes.push("the carousel's title has no place in an RCS carousel".into());
            }
            Rendered {
                native: Some(RichMessage::Carousel(cards)),
                text: String::new(),
                form: Form::Carousel,
                options,
                notes,
            }
        }
        None => Rendered::numbered(choices, text(choices), notes),
    }
}

/// The RCS cards and the options as sent, or `None` (with the reason in `notes`) when the
/// carousel does not fit RCS's rules.
fn rcs(choices: &Choices, notes: &mut Vec<String>) -> Option<(Vec<Card>, Vec<SentOption>)> {
    let usable = |u: &str| u.starts_with("https://") && u.chars().count() <= URL_CHARS;
    if choices.cards.len() > MAX_CARDS {
        notes.push(format!(
            "{} cards: an RCS carousel holds at most {MAX_CARDS}",
            choices.cards.len()
        ));
        return None;
    }
    let mut cards = Vec::new();
    let mut options = Vec::new();
    for (c, card) in (1..).zip(&choices.cards) {
        if card.actions.len() > MAX_CARD_SUGGESTIONS {
            notes.push(format!(
                "card {c}: {} options and links; an RCS card holds at most {MAX_CARD_SUGGESTIONS}",
                card.actions.len()
            ));
            return None;
        }
        let Some(image) = card.image_url.as_deref().filter(|u| usable(u)) else {
            notes.push(format!(
                "card {c}: no https image of at most 2,048 characters (an RCS card needs one)"
            ));
            return None;
        };
        let title = truncate(card.title.trim(), CARD_TITLE_CHARS);
        if title.is_empty() {
            notes.push(format!("card {c}: its title is empty"));
            return None;
        }
        if title != card.title.trim() {
            notes.push(format!(
                "card {c}: title cut to {CARD_TITLE_CHARS} characters"
            ));
        }
        let description = card.subtitle.as_deref().map(|s| {
            let cut = truncate(s.trim(), CARD_DESCRIPTION_CHARS);
            if cut != s.trim() {
                notes.push(format!(
                    "card {c}: subtitle cut to {CARD_DESCRIPTION_CHARS} characters"
                ));
            }
            cut
        });
        let mut suggestions: Vec<CardSuggestion> = Vec::new();
        for action in &card.actions {
            let (label, postback, url) = match action {
                CardAction::Option(i) => {
                    let option = choices.options.get(*i)?;
                    let id = sent_id(&option.id, i + 1, RCS_POSTBACK_CHARS);
                    (option.title.trim(), id, None)
                }
                CardAction::Link { title, url } => {
                    if !usable(url) {
                        notes.push(format!(
                            "card {c}: the link `{}` is not an https URL of at most 2,048 characters",
                            title.trim()
                        ));
                        return None;
                    }
                    (title.trim(), OPEN_POSTBACK.to_owned(), Some(url.clone()))
                }
            };
            let text = truncate(label, RCS_SUGGESTION_CHARS);
            if text.is_empty() || suggestions.iter().any(|s| s.text == text) {
                notes.push(format!(
                    "card {c}: a title is empty or not distinct within {RCS_SUGGESTION_CHARS} characters"
                ));
                return None;
            }
            if text != label {
                notes.push(format!(
                    "card {c}: `{text}` cut to {RCS_SUGGESTION_CHARS} characters"
                ));
            }
            if let CardAction::Option(i) = action {
                options.push(SentOption {
                    number: i + 1,
                    option_identifier: choices.options[*i].id.clone(),
                    sent_id: Some(postback.clone()),
                    title: text.clone(),
                });
            }
            suggestions.push(CardSuggestion {
                text,
                postback,
                url,
            });
        }
        cards.push(Card {
            title,
            description,
            image_url: image.to_owned(),
            suggestions,
        });
    }
    Some((cards, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::events::{CarouselCard, ChoiceOption};

    /// Two cards: a room with two options and a link, a suite with one option.
    fn carousel(image: Option<&str>) -> Choices {
        let option = |id: &str, title: &str| ChoiceOption {
            id: id.into(),
            title: title.into(),
        };
        Choices {
            message_id: "m-1".into(),
            format: "Carousel".into(),
            text: "Our rooms".into(),
            options: vec![
                option("room-1n", "Book one night"),
                option("room-2n", "Book two nights"),
                option("suite", "Book the suite for the whole weekend"),
            ],
            cards: vec![
                CarouselCard {
                    title: "Double room".into(),
                    subtitle: Some("Sea view".into()),
                    image_url: image.map(str::to_owned),
                    actions: vec![
                        CardAction::Option(0),
                        CardAction::Option(1),
                        CardAction::Link {
                            title: "Photos".into(),
                            url: "https://acme.example/room".into(),
                        },
                    ],
                },
                CarouselCard {
                    title: "Suite".into(),
                    subtitle: None,
                    image_url: image.map(str::to_owned),
                    actions: vec![CardAction::Option(2)],
                },
            ],
            time_picker: None,
        }
    }

    #[test]
    fn rcs_gets_one_card_per_item_with_replies_and_link_actions() {
        let r = render(
            &carousel(Some("https://acme.example/room.png")),
            ChannelKind::KaleyraRcs,
        );
        assert_eq!(r.form, Form::Carousel);
        let Some(RichMessage::Carousel(cards)) = &r.native else {
            panic!("{r:?}")
        };
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].description.as_deref(), Some("Sea view"));
        assert_eq!(
            cards[0].suggestions[2],
            CardSuggestion {
                text: "Photos".into(),
                postback: OPEN_POSTBACK.into(),
                url: Some("https://acme.example/room".into()),
            }
        );
        assert_eq!(cards[1].suggestions[0].text, "Book the suite for the w…");
        assert_eq!(cards[1].suggestions[0].postback, "suite");
        let numbers: Vec<(usize, &str)> = r
            .options
            .iter()
            .map(|o| (o.number, o.sent_id.as_deref().unwrap()))
            .collect();
        assert_eq!(numbers, [(1, "room-1n"), (2, "room-2n"), (3, "suite")]);
        assert!(
            r.notes.iter().any(|n| n.contains("title has no place")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn whatsapp_and_cards_without_images_get_numbered_text() {
        let expected = "Our rooms\n\nDouble room — Sea view\n1. Book one night\n2. Book two nights\n\
             Photos: https://acme.example/room\n\nSuite\n3. Book the suite for the whole weekend\n\n\
             Reply with the number of your choice.";
        let wa = render(
            &carousel(Some("https://acme.example/room.png")),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(wa.form, Form::Text);
        assert_eq!(wa.text, expected);
        let no_image = render(&carousel(None), ChannelKind::EightByEightRcs);
        assert_eq!(no_image.native, None);
        assert_eq!(no_image.text, expected);
        assert!(no_image.notes[0].contains("card 1: no https image"));
        assert_eq!(no_image.options[2].number, 3);
        assert_eq!(no_image.options[2].option_identifier, "suite");
    }

    #[test]
    fn too_many_cards_or_suggestions_fall_back_to_text() {
        let mut many = carousel(Some("https://acme.example/i.png"));
        let card = many.cards[1].clone();
        many.cards.extend(std::iter::repeat_n(card, 9));
        let r = render(&many, ChannelKind::KaleyraRcs);
        assert_eq!(r.form, Form::Text);
        assert!(r.notes[0].contains("11 cards"), "{:?}", r.notes);
        let mut crowded = carousel(Some("https://acme.example/i.png"));
        crowded.cards[0].actions.extend([
            CardAction::Link {
                title: "Map".into(),
                url: "https://acme.example/map".into(),
            },
            CardAction::Link {
                title: "Prices".into(),
                url: "https://acme.example/prices".into(),
            },
        ]);
        let r = render(&crowded, ChannelKind::EightByEightRcs);
        assert_eq!(r.form, Form::Text);
        assert!(r.notes[0].contains("at most 4"), "{:?}", r.notes);
    }
}
