//! Rep choices (Salesforce `ChoicesMessage`) → WhatsApp reply buttons and lists through 8x8,
//! RCS suggestions and card carousels through 8x8 RCS and Kaleyra, or numbered text; time
//! pickers as lists or suggestions of their slots; rich links
//! → RCS rich cards or text; the end user's tap or typed number → `ChoicesResponseMessage`; on
//! both backends, through the real endpoints and the emulators.
#![cfg(feature = "sandbox")] // runs against the emulators

use crate::support;

use byocd::{
    sandbox::eightbyeight::{InboundBody, InboundFormat, WebhookUser},
    sandbox::rep::{RepCard, RepCardItem},
    store::Store as _,
    store::relay::kind,
};
use serde_json::{Value, json};
use support::{
    TestDb,
    channels::{RCS_AGENT, RCS_CHANNEL, WA_CHANNEL},
    harness::kaleyra,
    outbound::Outbound,
    salesforce::{CC_ADDRESS, MSG_ADDRESS},
};

const WA_USER: &str = "+447700900301";
const RCS_USER: &str = "+447700900302";

async fn wa_conversation(h: &Outbound) {
    let inbound =
        h.wa.webhooks()
            .inbound_text(&WebhookUser::phone(WA_USER), "hello");
    h.webhook(WA_CHANNEL, &inbound.body).await;
    h.drain().await;
    assert!(h.salesforce.conversation_of(MSG_ADDRESS, WA_USER).is_some());
}

async fn rcs_conversation(h: &Outbound) {
    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "mo-c1", &RCS_USER[1..], Some("hi")),
    )
    .await;
    h.drain().await;
    assert!(h.salesforce.conversation_of(CC_ADDRESS, RCS_USER).is_some());
}

/// The `abstractMessage` of the newest entry Salesforce received in a conversation.
fn last_message(h: &Outbound, address: &str, user: &str) -> Value {
    let conversation = h.salesforce.conversation_of(address, user).unwrap();
    conversation.entries.last().unwrap().json["payload"]["abstractMessage"].clone()
}

/// What a `ChoicesResponseMessage` for `option` replying to `message_id` looks like.
fn choices_response(message: &Value, message_id: &str, option: &str) -> Value {
    json!({
        "id": message["id"],
        "messageType": "ChoicesResponseMessage",
        "inReplyToMessageId": message_id,
        "choicesResponse": {
            "formatType": "Selections",
            "selectedOptions": [{ "optionIdentifier": option }],
        },
    })
}

async fn wa_tap(h: &Outbound, body: InboundBody) {
    let tap =
        h.wa.webhooks()
            .inbound(InboundFormat::V3, &WebhookUser::phone(WA_USER), &body);
    h.webhook(WA_CHANNEL, &tap.body).await;
    h.drain().await;
}

async fn three_buttons_reach_whatsapp_and_a_tap_answers_the_rep(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    let (entry, message_id) = h
        .rep
        .choices(
            (MSG_ADDRESS, WA_USER),
            "Buttons",
            "When shall we call?",
            &[
                ("opt-morning", "Morning"),
                ("opt-afternoon", "Afternoon, after lunch time"),
                ("opt-never", "Never"),
            ],
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].kind, "interactive");
    assert_eq!(
        sent[0].client_message_id.as_deref(),
        Some(entry.identifier.as_str())
    );
    // The second title is cut to WhatsApp's 20 characters.
    assert_eq!(
        sent[0].content,
        json!({ "interactive": {
            "type": "button",
            "body": { "text": "When shall we call?" },
            "action": { "buttons": [
                { "type": "reply", "reply": { "id": "opt-morning", "title": "Morning" } },
                { "type": "reply", "reply": { "id": "opt-afternoon", "title": "Afternoon, after lu…" } },
                { "type": "reply", "reply": { "id": "opt-never", "title": "Never" } },
            ] },
        } })
    );

    wa_tap(
        &h,
        InboundBody::ButtonReply {
            id: "opt-afternoon".into(),
            title: "Afternoon, after lu…".into(),
        },
    )
    .await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(
        message,
        choices_response(&message, &message_id, "opt-afternoon")
    );
    // What was sent is on record, answered.
    let conversation = byocd::store::Store::outbox(&h.store, &Default::default())
        .await
        .unwrap()
        .into_iter()
        .find_map(|r| r.conversation_id)
        .unwrap();
    let prompts = byocd::store::Store::choice_prompts(&h.store, conversation, 5)
        .await
        .unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].form, "buttons");
    assert_eq!(prompts[0].message_id, message_id);
    assert!(prompts[0].answered);
}

async fn four_options_become_a_whatsapp_list_and_a_row_answers_the_rep(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    let (_, message_id) = h
        .rep
        .choices(
            (MSG_ADDRESS, WA_USER),
            "ListPicker",
            "Pick a store",
            &[
                ("s1", "Camden"),
                ("s2", "Islington"),
                ("s3", "Kensington and Chelsea High Street"),
                ("s4", "Soho"),
            ],
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // A row title is cut to 24 characters.
    assert_eq!(
        sent[0].content,
        json!({ "interactive": {
            "type": "list",
            "body": { "text": "Pick a store" },
            "action": {
                "button": "Choose",
                "sections": [{ "rows": [
                    { "id": "s1", "title": "Camden" },
                    { "id": "s2", "title": "Islington" },
                    { "id": "s3", "title": "Kensington and Chelsea …" },
                    { "id": "s4", "title": "Soho" },
                ] }],
            },
        } })
    );
    wa_tap(
        &h,
        InboundBody::ListReply {
            id: "s4".into(),
            title: "Soho".into(),
            description: None,
        },
    )
    .await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(message, choices_response(&message, &message_id, "s4"));
}

async fn too_many_options_go_as_numbered_text_and_a_typed_number_answers_once(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    let titles: Vec<String> = (1..=11).map(|n| format!("Slot {n}")).collect();
    let ids: Vec<String> = (1..=11).map(|n| format!("slot-{n}")).collect();
    let options: Vec<(&str, &str)> = ids
        .iter()
        .zip(&titles)
        .map(|(i, t)| (i.as_str(), t.as_str()))
        .collect();
    let (_, message_id) = h
        .rep
        .choices((MSG_ADDRESS, WA_USER), "Buttons", "Which slot?", &options)
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 1).await;
    h.drain().await;
    let sent = h.wa.sent_messages();
    assert_eq!(sent[0].kind, "text");
    let expected: String = std::iter::once("Which slot?\n\n".to_owned())
        .chain((1..=11).map(|n| format!("{n}. Slot {n}\n")))
        .chain(std::iter::once(
            "Reply with the number of your choice.".to_owned(),
        ))
        .collect();
    assert_eq!(sent[0].content, json!({ "text": expected }));

    wa_tap(&h, InboundBody::Text(" 2 ".into())).await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(message, choices_response(&message, &message_id, "slot-2"));
    // The choices are answered: a second "2" is only text.
    wa_tap(&h, InboundBody::Text("2".into())).await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(message["messageType"], "StaticContentMessage");
    assert_eq!(message["staticContent"]["text"], "2");
}

async fn kaleyra_gets_suggestions_cut_to_25_characters_or_numbered_text(db: TestDb) {
    let h = Outbound::start(db, "").await;
    rcs_conversation(&h).await;
    h.rep
        .choices(
            (CC_ADDRESS, RCS_USER),
            "QuickReplies",
            "Was this helpful?",
            &[("yes", "Yes, thank you very much indeed"), ("no", "No")],
        )
        .unwrap();
    let twelve: Vec<(String, String)> = (1..=12)
        .map(|n| (format!("o{n}"), format!("Option {n}")))
        .collect();
    let twelve: Vec<(&str, &str)> = twelve
        .iter()
        .map(|(i, t)| (i.as_str(), t.as_str()))
        .collect();
    let (_, second_id) = h
        .rep
        .choices((CC_ADDRESS, RCS_USER), "Buttons", "Pick one", &twelve)
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 2).await;
    h.drain().await;
    let bodies: Vec<Value> = h
        .rcs
        .requests_to("/rcs/messages")
        .into_iter()
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["from"], RCS_AGENT);
    assert_eq!(bodies[0]["text"], "Was this helpful?");
    assert_eq!(
        bodies[0]["suggestions"],
        json!([
            { "reply": { "text": "Yes, thank you very much…", "postbackData": "yes" } },
            { "reply": { "text": "No", "postbackData": "no" } },
        ])
    );
    // Twelve options are more than an RCS chip list holds: numbered text.
    assert!(bodies[1].get("suggestions").is_none());
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(text.starts_with("Pick one\n\n1. Option 1\n"), "{text}");
    assert!(text.ends_with("12. Option 12\nReply with the number of your choice."));

    h.webhook(
        RCS_CHANNEL,
        &kaleyra("USER_MESSAGE", "mo-c2", &RCS_USER[1..], Some("12")),
    )
    .await;
    h.drain().await;
    let message = last_message(&h, CC_ADDRESS, RCS_USER);
    assert_eq!(message, choices_response(&message, &second_id, "o12"));
}

/// A rep's rich link: on Kaleyra RCS a standalone rich card (image, title, the rep's text, an
/// "Open" action), or text when the link has no image; on WhatsApp text with the URL.
async fn a_rich_link_becomes_an_rcs_rich_card_or_text_with_the_url(db: TestDb) {
    let h = Outbound::start(db, "").await;
    rcs_conversation(&h).await;
    wa_conversation(&h).await;
    let long_title = "W".repeat(230);
    h.rep
        .rich_link(
            (CC_ADDRESS, RCS_USER),
            "https://acme.example/offer",
            &long_title,
            Some("https://acme.example/offer.png"),
            Some("Ends Friday"),
        )
        .unwrap();
    h.rep
        .rich_link(
            (CC_ADDRESS, RCS_USER),
            "https://acme.example/help",
            "Help centre",
            None,
            None,
        )
        .unwrap();
    h.rep
        .rich_link(
            (MSG_ADDRESS, WA_USER),
            "https://acme.example/offer",
            "Winter offer",
            Some("https://acme.example/offer.png"),
            Some("Ends Friday"),
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 3).await;
    h.drain().await;
    let bodies: Vec<Value> = h
        .rcs
        .requests_to("/rcs/messages")
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let reference = bodies[0]["ref"].clone();
    assert_eq!(
        bodies[0],
        json!({
            "from": RCS_AGENT,
            "to": [&RCS_USER[1..]],
            "richCardStandalone": {
                "cardOrientation": "VERTICAL",
                "content": {
                    "title": format!("{}…", "W".repeat(199)),
                    "description": "Ends Friday",
                    "media": { "height": "MEDIUM",
                        "file": { "fileUrl": "https://acme.example/offer.png" } },
                    "suggestions": [{ "action": {
                        "text": "Open",
                        "postbackData": "byocd:open-link",
                        "openUrlAction": { "url": "https://acme.example/offer" },
                    } }],
                },
            },
            "ref": reference,
        })
    );
    assert_eq!(bodies[1]["text"], "Help centre\nhttps://acme.example/help");
    assert!(bodies[1].get("richCardStandalone").is_none());
    let wa_texts: Vec<String> =
        h.wa.sent_messages()
            .iter()
            .filter_map(|m| m.content["text"].as_str().map(str::to_owned))
            .collect();
    assert!(
        wa_texts.contains(&"Ends Friday\nWinter offer\nhttps://acme.example/offer".to_owned()),
        "{wa_texts:?}"
    );
    // What was cut or why there was no card is in the audit trail.
    let rendered = h
        .store
        .audit(&byocd::store::AuditFilter {
            kind: Some("outbound.link_rendered".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let notes: Vec<String> = rendered.iter().map(|r| r.entry.message.clone()).collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("as a rich card: title cut to 200")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("as text: the link has no image")),
        "{notes:?}"
    );
}

/// Two cards: a double room (subtitle, an option and a link) and a suite (one option with a
/// title longer than an RCS suggestion).
fn rooms() -> [RepCard<'static>; 2] {
    [
        RepCard {
            title: "Double room",
            subtitle: Some("Sea view"),
            image_url: Some("https://acme.example/room.png"),
            items: &[
                RepCardItem::Option("room-1n", "One night"),
                RepCardItem::Link("Photos", "https://acme.example/room"),
            ],
        },
        RepCard {
            title: "Suite",
            subtitle: None,
            image_url: Some("https://acme.example/suite.png"),
            items: &[RepCardItem::Option(
                "suite",
                "Book the suite for the whole weekend",
            )],
        },
    ]
}

/// The 8x8 RCS channel: suggested replies in the OAS's suggestion object (titles cut to 25
/// characters; more than 10 options as numbered text), a carousel as `type: carousel`, and the
/// end user's tap on a card's reply (type `Buttons`, the postback data as `payload`) answering
/// the rep.
async fn eightbyeight_rcs_gets_suggestions_and_carousels_and_a_tap_answers_the_rep(db: TestDb) {
    let h = Outbound::start_8x8_rcs(db).await;
    wa_conversation(&h).await;
    h.rep
        .choices(
            (MSG_ADDRESS, WA_USER),
            "QuickReplies",
            "Was this helpful?",
            &[("yes", "Yes, thank you very much indeed"), ("no", "No")],
        )
        .unwrap();
    let eleven: Vec<(String, String)> = (1..=11)
        .map(|n| (format!("o{n}"), format!("Option {n}")))
        .collect();
    let eleven: Vec<(&str, &str)> = eleven
        .iter()
        .map(|(i, t)| (i.as_str(), t.as_str()))
        .collect();
    h.rep
        .choices((MSG_ADDRESS, WA_USER), "Buttons", "Pick one", &eleven)
        .unwrap();
    let (_, carousel_id) = h
        .rep
        .carousel((MSG_ADDRESS, WA_USER), None, &rooms())
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 3).await;
    h.drain().await;

    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0].kind, "text");
    assert_eq!(
        sent[0].content,
        json!({
            "text": "Was this helpful?",
            "suggestions": [
                { "reply": { "text": "Yes, thank you very much…", "postbackData": "yes" } },
                { "reply": { "text": "No", "postbackData": "no" } },
            ],
        })
    );
    // Eleven options are more than 8x8's ten suggestions: numbered text.
    assert_eq!(sent[1].kind, "text");
    assert!(sent[1].content.get("suggestions").is_none());
    let text = sent[1].content["text"].as_str().unwrap();
    assert!(text.starts_with("Pick one\n\n1. Option 1\n"), "{text}");
    assert_eq!(sent[2].kind, "carousel");
    let media = |url: &str| json!({ "height": "medium", "contentInfo": { "fileUrl": url } });
    assert_eq!(
        sent[2].content,
        json!({ "carousel": {
            "cardWidth": "medium",
            "cards": [
                {
                    "title": "Double room",
                    "description": "Sea view",
                    "media": media("https://acme.example/room.png"),
                    "suggestions": [
                        { "reply": { "text": "One night", "postbackData": "room-1n" } },
                        { "action": {
                            "text": "Photos",
                            "postbackData": "byocd:open-link",
                            "openUrlAction": { "url": "https://acme.example/room" },
                        } },
                    ],
                },
                {
                    "title": "Suite",
                    "media": media("https://acme.example/suite.png"),
                    "suggestions": [{ "reply": {
                        "text": "Book the suite for the w…", "postbackData": "suite",
                    } }],
                },
            ],
        } })
    );

    // The end user taps the suite's reply.
    wa_tap(
        &h,
        InboundBody::SuggestionReply {
            text: "Book the suite for the w…".into(),
            payload: "suite".into(),
        },
    )
    .await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(message, choices_response(&message, &carousel_id, "suite"));
}

/// A rep's carousel: on Kaleyra RCS a `richCardCarousel` (a card per item, its options as
/// suggested replies carrying their identifiers, its links as open-URL actions); on WhatsApp
/// numbered text across the cards, where a typed number answers the rep with the option.
async fn a_carousel_becomes_rcs_cards_or_numbered_text_that_a_typed_number_answers(db: TestDb) {
    let h = Outbound::start(db, "").await;
    rcs_conversation(&h).await;
    wa_conversation(&h).await;
    let cards = rooms();
    h.rep
        .carousel((CC_ADDRESS, RCS_USER), Some("Our rooms"), &cards)
        .unwrap();
    let (_, wa_id) = h
        .rep
        .carousel((MSG_ADDRESS, WA_USER), Some("Our rooms"), &cards)
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 2).await;
    h.drain().await;

    let bodies: Vec<Value> = h
        .rcs
        .requests_to("/rcs/messages")
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let reference = bodies[0]["ref"].clone();
    let media = |url: &str| json!({ "height": "MEDIUM", "file": { "fileUrl": url } });
    assert_eq!(
        bodies[0],
        json!({
            "from": RCS_AGENT,
            "to": [&RCS_USER[1..]],
            "richCardCarousel": {
                "cardWidth": "MEDIUM",
                "cardContents": [
                    {
                        "title": "Double room",
                        "description": "Sea view",
                        "media": media("https://acme.example/room.png"),
                        "suggestions": [
                            { "reply": { "text": "One night", "postbackData": "room-1n" } },
                            { "action": {
                                "text": "Photos",
                                "postbackData": "byocd:open-link",
                                "openUrlAction": { "url": "https://acme.example/room" },
                            } },
                        ],
                    },
                    {
                        "title": "Suite",
                        "media": media("https://acme.example/suite.png"),
                        "suggestions": [{ "reply": {
                            "text": "Book the suite for the w…", "postbackData": "suite",
                        } }],
                    },
                ],
            },
            "ref": reference,
        })
    );

    let wa_texts: Vec<String> =
        h.wa.sent_messages()
            .iter()
            .filter_map(|m| m.content["text"].as_str().map(str::to_owned))
            .collect();
    let numbered = "Our rooms\n\nDouble room — Sea view\n1. One night\n\
        Photos: https://acme.example/room\n\nSuite\n2. Book the suite for the whole weekend\n\n\
        Reply with the number of your choice.";
    assert!(wa_texts.contains(&numbered.to_owned()), "{wa_texts:?}");
    // "2" picks the suite, the second option over both cards.
    let typed =
        h.wa.webhooks()
            .inbound_text(&WebhookUser::phone(WA_USER), "2");
    h.webhook(WA_CHANNEL, &typed.body).await;
    h.drain().await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(message, choices_response(&message, &wa_id, "suite"));
}

/// A rep's time picker: on WhatsApp a list whose rows are the slots in the event's local time,
/// with the zone in the body, and a tapped row answering the rep with the slot's identifier; on
/// Kaleyra RCS the same slots as suggested replies.
async fn a_time_picker_becomes_a_list_of_slots_and_a_tap_answers_the_rep(db: TestDb) {
    let h = Outbound::start(db, "").await;
    wa_conversation(&h).await;
    rcs_conversation(&h).await;
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let slots = [
        ("visit-am", at("2026-12-08T09:00:00Z"), 7200),
        ("visit-pm", at("2026-12-08T13:30:00Z"), 3600),
        ("visit-late", at("2026-12-08T23:30:00Z"), 3600),
    ];
    let (_, wa_id) = h
        .rep
        .time_picker(
            (MSG_ADDRESS, WA_USER),
            "When can our engineer visit?",
            "Boiler service",
            Some(60),
            &slots,
        )
        .unwrap();
    h.rep
        .time_picker(
            (CC_ADDRESS, RCS_USER),
            "When can our engineer visit?",
            "Boiler service",
            None,
            &slots[..2],
        )
        .unwrap();
    h.wait_rows(kind::PROVIDER_MESSAGE, 2).await;
    h.drain().await;

    let sent = h.wa.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].content,
        json!({ "interactive": {
            "type": "list",
            "body": { "text": "When can our engineer visit?\nBoiler service\nTimes are UTC+01:00." },
            "action": {
                "button": "Choose",
                "sections": [{ "rows": [
                    { "id": "visit-am", "title": "Tue 8 Dec 10:00–12:00" },
                    { "id": "visit-pm", "title": "Tue 8 Dec 14:30–15:30" },
                    { "id": "visit-late", "title": "Wed 9 Dec 00:30–01:30" },
                ] }],
            },
        } })
    );
    let bodies: Vec<Value> = h
        .rcs
        .requests_to("/rcs/messages")
        .into_iter()
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(
        bodies[0]["text"],
        "When can our engineer visit?\nBoiler service\nTimes are UTC."
    );
    assert_eq!(
        bodies[0]["suggestions"],
        json!([
            { "reply": { "text": "Tue 8 Dec 09:00–11:00", "postbackData": "visit-am" } },
            { "reply": { "text": "Tue 8 Dec 13:30–14:30", "postbackData": "visit-pm" } },
        ])
    );

    wa_tap(
        &h,
        InboundBody::ListReply {
            id: "visit-pm".into(),
            title: "Tue 8 Dec 14:30–15:30".into(),
            description: None,
        },
    )
    .await;
    let message = last_message(&h, MSG_ADDRESS, WA_USER);
    assert_eq!(message, choices_response(&message, &wa_id, "visit-pm"));
}

on_both_backends!(
    a_time_picker_becomes_a_list_of_slots_and_a_tap_answers_the_rep,
    eightbyeight_rcs_gets_suggestions_and_carousels_and_a_tap_answers_the_rep,
    a_carousel_becomes_rcs_cards_or_numbered_text_that_a_typed_number_answers,
    a_rich_link_becomes_an_rcs_rich_card_or_text_with_the_url,
    three_buttons_reach_whatsapp_and_a_tap_answers_the_rep,
    four_options_become_a_whatsapp_list_and_a_row_answers_the_rep,
    too_many_options_go_as_numbered_text_and_a_typed_number_answers_once,
    kaleyra_gets_suggestions_cut_to_25_characters_or_numbered_text,
);
