//! A rep's `TimePicker` (a `ChoicesMessage` offering time slots of a calendar event) on each
//! channel kind — the rules of docs/providers.md ("Time pickers"). Neither WhatsApp nor RCS has
//! a time picker, so the slots become the options of a list picker and go out as any choices
//! do ([`crate::domain::choices::render`]): a WhatsApp list (at most 10 slots), RCS suggested
//! replies, or numbered text; a tap or a typed number answers the rep with the slot's
//! `optionIdentifier`.
//!
//! - Each slot reads `Tue 8 Dec 14:00–15:00`: its start and end in the event's local time (the
//!   event's `timezoneOffset`, minutes east of UTC; UTC without one), within WhatsApp's 24
//!   characters per row and RCS's 25 per suggestion. A slot ending the next day reads
//!   `Tue 8 Dec 23:30–00:30`; one of a day or more shows its length (`Tue 8 Dec 14:00 (26 h)`);
//!   one of no duration its start only.
//! - The question is the picker's `message.title` (else the event's title), followed by the
//!   event's title when it differs, its place when given, and the time zone the slots are in
//!   (`Times are UTC+01:00.`): the end user's phone cannot convert them.

use chrono::{DateTime, Duration, FixedOffset};

use crate::{
    domain::choices::{self, ChannelKind, Rendered},
    salesforce::events::{Choices, TimePicker, TimeSlot},
};

/// The widest offset from UTC byocd shows (the world's zones span −12:00 to +14:00); an offset
/// beyond it is taken as a mistake and the slots are shown in UTC.
const MAX_OFFSET_MINUTES: i32 = 14 * 60;
/// A slot this long or longer shows its length instead of its end.
const DAY_SECONDS: i64 = 24 * 3600;

/// The form a rep's time picker takes on a channel of `kind`: its slots as a list picker's
/// options, rendered as any choices.
pub fn render(choices: &Choices, kind: ChannelKind) -> Rendered {
    let mut list = Choices {
        format: "ListPicker".to_owned(),
        cards: Vec::new(),
        time_picker: None,
        ..choices.clone()
    };
    let mut notes = Vec::new();
    // Parsed time pickers always carry theirs; without it, the options go as they are.
    if let Some(picker) = &choices.time_picker {
        let zone = zone(picker.offset_minutes, &mut notes);
        list.text = question(&choices.text, picker, zone);
        for (option, slot) in list.options.iter_mut().zip(&picker.slots) {
            option.title = slot_title(slot, zone);
        }
    }
    let mut rendered = choices::render(&list, kind);
    notes.append(&mut rendered.notes);
    rendered.notes = notes;
    rendered
}

/// The zone the slots are shown in.
fn zone(offset_minutes: Option<i32>, notes: &mut Vec<String>) -> FixedOffset {
    let utc = FixedOffset::east_opt(0).expect("UTC");
    match offset_minutes {
        None => utc,
        Some(m) if m.abs() <= MAX_OFFSET_MINUTES => FixedOffset::east_opt(m * 60).unwrap_or(utc),
        Some(m) => {
            notes.push(format!(
                "timezoneOffset {m} is beyond ±{MAX_OFFSET_MINUTES} minutes: slots shown in UTC"
            ));
            utc
        }
    }
}

/// How a zone reads: `UTC`, `UTC+01:00`, `UTC-05:30`.
fn zone_name(zone: FixedOffset) -> String {
    let seconds = zone.local_minus_utc();
    if seconds == 0 {
        return "UTC".to_owned();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.abs() / 60;
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The question, the event, its place and the zone, one per line.
fn question(asked: &str, picker: &TimePicker, zone: FixedOffset) -> String {
    let asked = asked.trim();
    let event = picker.event.trim();
    let mut lines = vec![asked.to_owned()];
    let mut about = String::new();
    if !event.is_empty() && event != asked {
        about.push_str(event);
    }
    if let Some(place) = picker.location.as_deref().map(str::trim) {
        if !about.is_empty() {
            about.push_str(" — ");
        }
        about.push_str(place);
    }
    if !about.is_empty() {
        lines.push(about);
    }
    lines.push(format!("Times are {}.", zone_name(zone)));
    lines.retain(|l| !l.is_empty());
    lines.join("\n")
}

/// `Tue 8 Dec 14:00–15:00` in `zone`; `Tue 8 Dec 14:00 (26 h)` for a day or longer.
fn slot_title(slot: &TimeSlot, zone: FixedOffset) -> String {
    let start: DateTime<FixedOffset> = slot.start.with_timezone(&zone);
    let mut title = start.format("%a %-d %b %H:%M").to_string();
    let seconds = i64::from(slot.duration_seconds);
    if seconds >= DAY_SECONDS {
        title.push_str(&format!(" ({} h)", seconds / 3600));
    } else if seconds > 0 {
        let end = (slot.start + Duration::seconds(seconds)).with_timezone(&zone);
        title.push('–');
        title.push_str(&end.format("%H:%M").to_string());
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::events::ChoiceOption;
    use crate::{domain::choices::Form, providers::RichMessage};

    fn picker(offset: Option<i32>, slots: &[(&str, u32)]) -> Choices {
        let slots: Vec<TimeSlot> = slots
            .iter()
            .map(|(start, duration)| TimeSlot {
                start: DateTime::parse_from_rfc3339(start).unwrap().to_utc(),
                duration_seconds: *duration,
            })
            .collect();
        Choices {
            message_id: "m-1".into(),
            format: "TimePicker".into(),
            text: "When can we visit?".into(),
            options: slots
                .iter()
                .enumerate()
                .map(|(i, s)| ChoiceOption {
                    id: format!("slot-{i}"),
                    title: s.start.to_rfc3339(),
                })
                .collect(),
            cards: Vec::new(),
            time_picker: Some(Box::new(TimePicker {
                event: "Boiler service".into(),
                offset_minutes: offset,
                location: Some("12 High Street".into()),
                slots,
            })),
        }
    }

    #[test]
    fn slots_read_in_the_events_zone_and_fit_a_whatsapp_row() {
        let choices = picker(
            Some(60),
            &[
                ("2026-12-08T13:00:00Z", 3600),
                ("2026-12-08T22:30:00Z", 3600),
                ("2026-12-09T08:00:00Z", 0),
                ("2026-12-10T13:00:00Z", 26 * 3600),
            ],
        );
        let rendered = render(&choices, ChannelKind::EightByEightWhatsapp);
        assert_eq!(rendered.form, Form::List);
        let titles: Vec<&str> = rendered.options.iter().map(|o| o.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Tue 8 Dec 14:00–15:00",
                "Tue 8 Dec 23:30–00:30",
                "Wed 9 Dec 09:00",
                "Thu 10 Dec 14:00 (26 h)",
            ]
        );
        assert!(titles.iter().all(|t| t.chars().count() <= 24), "{titles:?}");
        let RichMessage::List { body, rows, .. } = rendered.native.unwrap() else {
            panic!("not a list");
        };
        assert_eq!(rows[1].title, "Tue 8 Dec 23:30–00:30");
        assert_eq!(
            body,
            "When can we visit?\nBoiler service — 12 High Street\nTimes are UTC+01:00."
        );
        assert_eq!(rows[0].id, "slot-0");
        assert!(rendered.notes.is_empty(), "{:?}", rendered.notes);
    }

    #[test]
    fn rcs_gets_suggestions_and_a_zone_west_of_utc() {
        let choices = picker(Some(-330), &[("2026-12-08T13:00:00Z", 1800)]);
        let rendered = render(&choices, ChannelKind::KaleyraRcs);
        assert_eq!(rendered.form, Form::Suggestions);
        assert_eq!(rendered.options[0].title, "Tue 8 Dec 07:30–08:00");
        assert_eq!(rendered.options[0].option_identifier, "slot-0");
        let RichMessage::Suggestions { text, .. } = rendered.native.unwrap() else {
            panic!("not suggestions");
        };
        assert!(text.ends_with("\nTimes are UTC-05:30."), "{text}");
    }

    #[test]
    fn no_offset_means_utc_and_an_absurd_one_is_noted() {
        let plain = render(
            &picker(None, &[("2026-12-08T13:00:00Z", 3600)]),
            ChannelKind::KaleyraRcs,
        );
        assert_eq!(plain.options[0].title, "Tue 8 Dec 13:00–14:00");
        assert!(plain.notes.is_empty(), "{:?}", plain.notes);
        // Seconds where minutes were meant: shown in UTC, and the audit row says why.
        let absurd = render(
            &picker(Some(3600), &[("2026-12-08T13:00:00Z", 3600)]),
            ChannelKind::KaleyraRcs,
        );
        assert_eq!(absurd.options[0].title, "Tue 8 Dec 13:00–14:00");
        assert!(
            absurd.notes[0].contains("timezoneOffset 3600"),
            "{:?}",
            absurd.notes
        );
    }

    #[test]
    fn eleven_slots_on_whatsapp_are_numbered_text() {
        let starts: Vec<String> = (0..11)
            .map(|h| format!("2026-12-08T{:02}:00:00Z", 8 + h))
            .collect();
        let slots: Vec<(&str, u32)> = starts.iter().map(|s| (s.as_str(), 3600)).collect();
        let rendered = render(&picker(Some(0), &slots), ChannelKind::EightByEightWhatsapp);
        assert_eq!(rendered.form, Form::Text);
        assert!(
            rendered.text.contains("\n11. Tue 8 Dec 18:00–19:00\n"),
            "{}",
            rendered.text
        );
        assert!(
            rendered
                .text
                .starts_with("When can we visit?\nBoiler service")
        );
    }
}
