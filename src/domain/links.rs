//! A rep's `RichLink` on each channel kind: on RCS, a standalone **rich card** (the link's
//! image, its title, the rep's text as the description, and one "Open" action that opens the
//! URL) when the link has an `https` image; otherwise, and on WhatsApp, **text** with the title
//! and the URL (WhatsApp shows its own preview of a URL in a text message). The limits are the
//! RCS platform's, as 8x8 and Kaleyra publish them: title 200 characters, description 2,000,
//! suggestion text 25, postback data 2,048 (docs/providers.md, "Rich links").

use crate::{
    domain::choices::{ChannelKind, truncate},
    providers::{LinkCard, RichMessage},
    salesforce::events::RichLink,
};

/// Longest rich card title, in characters.
pub const CARD_TITLE_CHARS: usize = 200;
/// Longest rich card description, in characters.
pub const CARD_DESCRIPTION_CHARS: usize = 2000;
/// The label of the card's action that opens the link (at most 25 characters).
pub const OPEN_LABEL: &str = "Open";
/// The card action's postback data (RCS sends it back if the end user taps the action).
pub const OPEN_POSTBACK: &str = "byocd:open-link";
/// Longest URL an RCS action or media file may carry.
pub const URL_CHARS: usize = 2048;

/// How a rich link goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedLink {
    /// The rich card, or `None` for text.
    pub native: Option<RichMessage>,
    /// The text form (sent when there is no card; also what a template carries).
    pub text: String,
    /// Why the card was not used, or what was cut (for the audit trail).
    pub notes: Vec<String>,
}

/// The text form: the rep's text (if any), then the title, then the URL, one per line.
pub fn text(link: &RichLink) -> String {
    let mut lines = Vec::new();
    if let Some(text) = link.text.as_deref().filter(|t| !t.trim().is_empty()) {
        lines.push(text.to_owned());
    }
    if link.title.trim() != link.url.trim() {
        lines.push(link.title.clone());
    }
    lines.push(link.url.clone());
    lines.join("\n")
}

/// The form of `link` on a channel of `kind`.
pub fn render(link: &RichLink, kind: ChannelKind) -> RenderedLink {
    let text = text(link);
    let mut notes = Vec::new();
    let rcs = matches!(kind, ChannelKind::EightByEightRcs | ChannelKind::KaleyraRcs);
    if !rcs {
        return RenderedLink {
            native: None,
            text,
            notes,
        };
    }
    let usable = |u: &str| u.starts_with("https://") && u.chars().count() <= URL_CHARS;
    let image = match link.image_url.as_deref() {
        Some(image) if usable(image) => image,
        Some(_) => {
            notes.push(
                "the link's image is not an https URL of at most 2,048 characters: sent as text"
                    .into(),
            );
            return RenderedLink {
                native: None,
                text,
                notes,
            };
        }
        None => {
            notes.push("the link has no image (an RCS rich card needs one): sent as text".into());
            return RenderedLink {
                native: None,
                text,
                notes,
            };
        }
    };
    if !usable(&link.url) {
        notes.push("the link is not an https URL of at most 2,048 characters: sent as text".into());
        return RenderedLink {
            native: None,
            text,
            notes,
        };
    }
    let title = truncate(&link.title, CARD_TITLE_CHARS);
    if title != link.title {
        notes.push(format!("title cut to {CARD_TITLE_CHARS} characters"));
    }
    let description = link.text.as_deref().map(|t| {
        let cut = truncate(t, CARD_DESCRIPTION_CHARS);
        if cut != t {
            notes.push(format!("text cut to {CARD_DESCRIPTION_CHARS} characters"));
        }
        cut
    });
    RenderedLink {
        native: Some(RichMessage::Card(LinkCard {
            title,
            description,
            image_url: image.to_owned(),
            url: link.url.clone(),
            open_label: OPEN_LABEL.to_owned(),
            open_postback: OPEN_POSTBACK.to_owned(),
        })),
        text,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(image: Option<&str>, text: Option<&str>) -> RichLink {
        RichLink {
            url: "https://acme.example/offer".into(),
            title: "Winter offer".into(),
            image_url: image.map(str::to_owned),
            text: text.map(str::to_owned),
        }
    }

    #[test]
    fn rcs_gets_a_card_when_the_link_has_an_https_image() {
        let r = render(
            &link(Some("https://acme.example/offer.png"), Some("Ends Friday")),
            ChannelKind::KaleyraRcs,
        );
        assert_eq!(
            r.native,
            Some(RichMessage::Card(LinkCard {
                title: "Winter offer".into(),
                description: Some("Ends Friday".into()),
                image_url: "https://acme.example/offer.png".into(),
                url: "https://acme.example/offer".into(),
                open_label: "Open".into(),
                open_postback: OPEN_POSTBACK.into(),
            }))
        );
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn whatsapp_and_links_without_a_usable_image_get_text() {
        let whatsapp = render(
            &link(Some("https://acme.example/offer.png"), Some("Ends Friday")),
            ChannelKind::EightByEightWhatsapp,
        );
        assert_eq!(whatsapp.native, None);
        assert_eq!(
            whatsapp.text,
            "Ends Friday\nWinter offer\nhttps://acme.example/offer"
        );
        let bare = render(&link(None, None), ChannelKind::EightByEightRcs);
        assert_eq!(bare.native, None);
        assert_eq!(bare.text, "Winter offer\nhttps://acme.example/offer");
        assert!(bare.notes[0].contains("no image"), "{:?}", bare.notes);
        let http = render(
            &link(Some("http://acme.example/i.png"), None),
            ChannelKind::KaleyraRcs,
        );
        assert_eq!(http.native, None);
        assert!(http.notes[0].contains("https"), "{:?}", http.notes);
    }

    #[test]
    fn a_long_title_and_text_are_cut_to_the_card_limits() {
        let mut long = link(Some("https://acme.example/i.png"), Some(&"d".repeat(2500)));
        long.title = "t".repeat(250);
        let r = render(&long, ChannelKind::KaleyraRcs);
        let Some(RichMessage::Card(card)) = r.native else {
            panic!("{r:?}")
        };
        assert_eq!(card.title.chars().count(), 200);
        assert!(card.title.ends_with('…'));
        assert_eq!(card.description.unwrap().chars().count(), 2000);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    }
}
