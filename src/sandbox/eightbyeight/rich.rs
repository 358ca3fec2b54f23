//! The checks of interactive messages, RCS suggestions and rich cards in `POST /messages`, by the limits
//! WhatsApp (Meta's interactive object, which 8x8 passes on) and RCS publish:
//!
//! | rule | answer |
//! |---|---|
//! | `interactive` on WhatsApp: `type` `button` / `list` need `body.text` of 1 to 1,024 characters | 400, code 1000 |
//! | `button`: `action.buttons` 1 to 3 of `{type: "reply", reply: {id, title}}`, id 1 to 256, title 1 to 20 characters, ids and titles distinct | 400, code 1000 |
//! | `list`: `action.button` 1 to 20 characters; `action.sections` 1 to 10, a title (≤24) on each when more than one; rows 1 to 10 over all sections, id 1 to 200, title 1 to 24, description ≤72 characters, ids distinct | 400, code 1000 |
//! | `content.suggestions` on WhatsApp | 400, code 1000 |
//! | `content.suggestions` on RCS: at most 10, each (the OAS) exactly one of `{reply: {text, postbackData}}` / `{action: {text, postbackData, <one action>}}`, text 1 to 25 characters, postbackData 1 to 2,048 | 400, code 1000 |
//! | `content.carousel` (the OAS): `cardWidth` `small` / `medium`; `cards` 2 to 10, each a vertical card checked as a rich card's body below (media required, `height` allowed) | 400, code 1000 |
//! | `content.richCard` (the OAS): `cardOrientation` `horizontal` / `vertical`; `thumbnailImageAlignment` `left` / `right`, horizontal only; `title` ≤200, `description` ≤2,000 characters; `media.contentInfo.fileUrl` an http(s) URL of at most 2,048 characters; `media.height` `short` / `medium` / `tall`, vertical only; `suggestions` at most 4, each exactly one of `reply` / `action` with `text` 1 to 25 and `postbackData` 1 to 2,048 characters, an action with `openUrlAction.url` (≤2,048), `dialAction`, `viewLocationAction` or `createCalendarEventAction` | 400, code 1000 |
//!
//! 8x8 publishes no code of its own for these; 1000 ("Invalid parameter") is its code for a bad
//! field, and the message names the field.

use serde_json::{Map, Value};

/// Most buttons of a reply-button message.
pub const MAX_BUTTONS: usize = 3;
/// Longest button title.
pub const MAX_BUTTON_TITLE: usize = 20;
/// Most rows of a list message.
pub const MAX_ROWS: usize = 10;
/// Longest row title.
pub const MAX_ROW_TITLE: usize = 24;
/// Most suggestions on RCS.
pub const MAX_SUGGESTIONS: usize = 10;
/// Longest suggestion text.
pub const MAX_SUGGESTION_TEXT: usize = 25;

fn chars(v: &Value) -> Option<usize> {
    v.as_str().map(|s| s.chars().count())
}

/// A string of `min..=max` characters at `path`, or why not.
fn string(v: &Value, path: &str, min: usize, max: usize) -> Result<String, String> {
    match chars(v) {
        Some(n) if (min..=max).contains(&n) => Ok(v.as_str().unwrap_or_default().to_owned()),
        Some(n) => Err(format!("{path} has {n} characters; {min} to {max} allowed")),
        None => Err(format!("{path} is required and must be a string")),
    }
}

fn distinct(values: &[String], path: &str) -> Result<(), String> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(format!("{path} must be distinct; {v:?} repeats"));
        }
    }
    Ok(())
}

fn interactive(i: &Value) -> Result<(), String> {
    let kind = i["type"].as_str().unwrap_or_default();
    if !matches!(kind, "button" | "list") {
        // Other interactive types (call permission requests, flows …) are not checked here.
        return Ok(());
    }
    string(&i["body"]["text"], "content.interactive.body.text", 1, 1024)?;
    let action = &i["action"];
    if kind == "button" {
        let buttons = action["buttons"]
            .as_array()
            .filter(|b| (1..=MAX_BUTTONS).contains(&b.len()))
            .ok_or_else(|| {
                format!("content.interactive.action.buttons must hold 1 to {MAX_BUTTONS} buttons")
            })?;
        let (mut ids, mut titles) = (Vec::new(), Vec::new());
        for (n, b) in buttons.iter().enumerate() {
            let path = format!("content.interactive.action.buttons[{n}]");
            if b["type"].as_str() != Some("reply") {
                return Err(format!("{path}.type must be reply"));
            }
            ids.push(string(
                &b["reply"]["id"],
                &format!("{path}.reply.id"),
                1,
                256,
            )?);
            titles.push(string(
                &b["reply"]["title"],
                &format!("{path}.reply.title"),
                1,
                MAX_BUTTON_TITLE,
            )?);
        }
        distinct(&ids, "content.interactive.action.buttons[].reply.id")?;
        return distinct(&titles, "content.interactive.action.buttons[].reply.title");
    }
    string(
        &action["button"],
        "content.interactive.action.button",
        1,
        20,
    )?;
    let sections = action["sections"]
        .as_array()
        .filter(|s| (1..=10).contains(&s.len()))
        .ok_or("content.interactive.action.sections must hold 1 to 10 sections")?;
    let mut ids = Vec::new();
    for (n, section) in sections.iter().enumerate() {
        let path = format!("content.interactive.action.sections[{n}]");
        if sections.len() > 1 || !section["title"].is_null() {
            string(&section["title"], &format!("{path}.title"), 1, 24)?;
        }
        let rows = section["rows"]
            .as_array()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("{path}.rows must hold at least one row"))?;
        for (m, row) in rows.iter().enumerate() {
            let path = format!("{path}.rows[{m}]");
            ids.push(string(&row["id"], &format!("{path}.id"), 1, 200)?);
            string(&row["title"], &format!("{path}.title"), 1, MAX_ROW_TITLE)?;
            if !row["description"].is_null() {
                string(&row["description"], &format!("{path}.description"), 0, 72)?;
            }
        }
    }
    if ids.len() > MAX_ROWS {
        return Err(format!(
            "content.interactive.action.sections hold {} rows; at most {MAX_ROWS} allowed",
            ids.len()
        ));
    }
    distinct(&ids, "content.interactive.action.sections[].rows[].id")
}

fn suggestions(s: &Value) -> Result<(), String> {
    let list = s
        .as_array()
        .filter(|l| l.len() <= MAX_SUGGESTIONS)
        .ok_or_else(|| {
            format!("content.suggestions must be an array of at most {MAX_SUGGESTIONS}")
        })?;
    for (n, item) in list.iter().enumerate() {
        card_suggestion(item, &format!("content.suggestions[{n}]"))?;
    }
    Ok(())
}

/// Most suggestions on one rich card.
pub const MAX_CARD_SUGGESTIONS: usize = 4;

fn one_of(v: &Value, path: &str, allowed: &[&str]) -> Result<(), String> {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err(format!("{path} must be one of {}", allowed.join(", "))),
    }
}

fn url(v: &Value, path: &str) -> Result<(), String> {
    let u = string(v, path, 1, 2048)?;
    if u.starts_with("https://") || u.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{path} must be an http(s) URL"))
    }
}

fn card_suggestion(item: &Value, path: &str) -> Result<(), String> {
    let (kind, body) = match (item.get("reply"), item.get("action")) {
        (Some(r), None) => ("reply", r),
        (None, Some(a)) => ("action", a),
        _ => return Err(format!("{path} must hold exactly one of reply, action")),
    };
    string(
        &body["text"],
        &format!("{path}.{kind}.text"),
        1,
        MAX_SUGGESTION_TEXT,
    )?;
    string(
        &body["postbackData"],
        &format!("{path}.{kind}.postbackData"),
        1,
        2048,
    )?;
    if kind == "action" {
        let actions = [
            "openUrlAction",
            "dialAction",
            "viewLocationAction",
            "createCalendarEventAction",
        ];
        let given: Vec<&&str> = actions.iter().filter(|a| body.get(**a).is_some()).collect();
        if given.len() != 1 {
            return Err(format!(
                "{path}.action must hold exactly one of {}",
                actions.join(", ")
            ));
        }
        if body.get("openUrlAction").is_some() {
            url(
                &body["openUrlAction"]["url"],
                &format!("{path}.action.openUrlAction.url"),
            )?;
        }
    }
    Ok(())
}

fn rich_card(card: &Value) -> Result<(), String> {
    let path = "content.richCard";
    one_of(
        &card["cardOrientation"],
        &format!("{path}.cardOrientation"),
        &["horizontal", "vertical"],
    )?;
    let vertical = card["cardOrientation"] == "vertical";
    if let Some(align) = card.get("thumbnailImageAlignment") {
        if vertical {
            return Err(format!(
                "{path}.thumbnailImageAlignment is for horizontal cards only"
            ));
        }
        one_of(
            align,
            &format!("{path}.thumbnailImageAlignment"),
            &["left", "right"],
        )?;
    }
    card_body(card, path, vertical)
}

/// `content.carousel` (the OAS): `cardWidth` `small` / `medium`; `cards` 2 to 10, each a
/// vertical card as [`card_body`] checks it.
fn carousel(carousel: &Value) -> Result<(), String> {
    let path = "content.carousel";
    one_of(
        &carousel["cardWidth"],
        &format!("{path}.cardWidth"),
        &["small", "medium"],
    )?;
    let cards = carousel["cards"]
        .as_array()
        .ok_or_else(|| format!("{path}.cards is required"))?;
    if !(2..=MAX_CAROUSEL_CARDS).contains(&cards.len()) {
        return Err(format!(
            "{path}.cards has {} cards; 2 to {MAX_CAROUSEL_CARDS} are allowed",
            cards.len()
        ));
    }
    for (n, card) in cards.iter().enumerate() {
        card_body(card, &format!("{path}.cards[{n}]"), true)?;
    }
    Ok(())
}

/// Most cards of a carousel.
pub const MAX_CAROUSEL_CARDS: usize = 10;

/// A card's title, description, media (required) and suggestions, at `path`.
fn card_body(card: &Value, path: &str, vertical: bool) -> Result<(), String> {
    if let Some(title) = card.get("title") {
        string(title, &format!("{path}.title"), 1, 200)?;
    }
    if let Some(description) = card.get("description") {
        string(description, &format!("{path}.description"), 1, 2000)?;
    }
    let media = card
        .get("media")
        .filter(|m| m.is_object())
        .ok_or_else(|| format!("{path}.media is required"))?;
    url(
        &media["contentInfo"]["fileUrl"],
        &format!("{path}.media.contentInfo.fileUrl"),
    )?;
    if let Some(height) = media.get("height") {
        if !vertical {
            return Err(format!("{path}.media.height is for vertical cards only"));
        }
        one_of(
            height,
            &format!("{path}.media.height"),
            &["short", "medium", "tall"],
        )?;
    }
    if let Some(list) = card.get("suggestions") {
        let list = list
            .as_array()
            .filter(|l| l.len() <= MAX_CARD_SUGGESTIONS)
            .ok_or_else(|| {
                format!("{path}.suggestions must be an array of at most {MAX_CARD_SUGGESTIONS}")
            })?;
        for (n, item) in list.iter().enumerate() {
            card_suggestion(item, &format!("{path}.suggestions[{n}]"))?;
        }
    }
    Ok(())
}

/// Why a send's interactive content or suggestions break the rules above, if they do.
pub(super) fn problem(kind: &str, content: &Map<String, Value>, whatsapp: bool) -> Option<String> {
    let problem = if let Some(s) = content.get("suggestions") {
        if whatsapp {
            Err("content.suggestions: suggestions are an RCS feature, not WhatsApp's".to_owned())
        } else {
            suggestions(s)
        }
    } else if kind == "interactive" && whatsapp {
        content.get("interactive").map_or(Ok(()), interactive)
    } else if kind == "richCard" && !whatsapp {
        content.get("richCard").map_or(Ok(()), rich_card)
    } else if kind == "carousel" && !whatsapp {
        content
            .get("carousel")
            .map_or_else(|| Err("content.carousel is required".to_owned()), carousel)
    } else {
        Ok(())
    };
    problem.err()
}

#[cfg(test)]
mod card_tests {
    use super::*;
    use crate::providers::{LinkCard, RichMessage, eightbyeight::rich_content};
    use serde_json::json;

    fn card_content() -> Map<String, Value> {
        let (kind, content) = rich_content(&RichMessage::Card(LinkCard {
            title: "Winter offer".into(),
            description: Some("Ends Friday".into()),
            image_url: "https://acme.example/offer.png".into(),
            url: "https://acme.example/offer".into(),
            open_label: "Open".into(),
            open_postback: "byocd:open-link".into(),
        }));
        assert_eq!(kind, "richCard");
        content.as_object().unwrap().clone()
    }

    #[test]
    fn byocds_rich_card_passes_and_each_limit_is_refused_with_its_field() {
        let good = card_content();
        assert_eq!(problem("richCard", &good, false), None);
        assert_eq!(
            good["richCard"]["suggestions"][0]["action"]["openUrlAction"]["url"],
            "https://acme.example/offer"
        );
        let broken = |edit: &dyn Fn(&mut Value)| {
            let mut c = good.clone();
            edit(c.get_mut("richCard").unwrap());
            problem("richCard", &c, false).unwrap_or_default()
        };
        assert!(
            broken(&|c| c["title"] = json!("t".repeat(201))).contains("richCard.title has 201")
        );
        assert!(broken(&|c| c["description"] = json!("d".repeat(2001))).contains("description"));
        assert!(broken(&|c| c["cardOrientation"] = json!("VERTICAL")).contains("cardOrientation"));
        assert!(broken(&|c| c["media"]["height"] = json!("huge")).contains("media.height"));
        assert!(broken(&|c| c["media"] = Value::Null).contains("media is required"));
        assert!(broken(&|c| c["thumbnailImageAlignment"] = json!("left")).contains("horizontal"));
        assert!(
            broken(&|c| c["suggestions"] = Value::Array(vec![c["suggestions"][0].clone(); 5]))
                .contains("at most 4")
        );
        assert!(
            broken(&|c| c["suggestions"][0]["action"]["text"] = json!("x".repeat(26)))
                .contains("action.text has 26")
        );
        assert!(
            broken(&|c| c["suggestions"][0]["action"]["openUrlAction"]["url"] = json!("ftp://x"))
                .contains("openUrlAction.url")
        );
    }

    #[test]
    fn byocds_carousel_passes_one_card_goes_standalone_and_the_card_count_is_checked() {
        use crate::providers::{Card, CardSuggestion};
        let card = |title: &str| Card {
            title: title.into(),
            description: None,
            image_url: "https://acme.example/i.png".into(),
            suggestions: vec![CardSuggestion {
                text: "Book".into(),
                postback: "book".into(),
                url: None,
            }],
        };
        let (kind, content) = rich_content(&RichMessage::Carousel(vec![card("A"), card("B")]));
        assert_eq!(kind, "carousel");
        let good = content.as_object().unwrap().clone();
        assert_eq!(problem("carousel", &good, false), None);
        let (kind, one) = rich_content(&RichMessage::Carousel(vec![card("A")]));
        assert_eq!(kind, "richCard");
        assert_eq!(problem("richCard", one.as_object().unwrap(), false), None);
        let broken = |edit: &dyn Fn(&mut Value)| {
            let mut c = good.clone();
            edit(c.get_mut("carousel").unwrap());
            problem("carousel", &c, false).unwrap_or_default()
        };
        assert!(
            broken(&|c| c["cards"] = Value::Array(vec![c["cards"][0].clone(); 11]))
                .contains("has 11 cards")
        );
        assert!(broken(&|c| c["cardWidth"] = json!("MEDIUM")).contains("cardWidth"));
        assert!(
            broken(&|c| c["cards"][1]["media"] = Value::Null)
                .contains("carousel.cards[1].media is required")
        );
        assert!(problem("carousel", &Map::new(), false).is_some());
    }
}
