//! Durations written the way people write them: `"30s"`, `"15m"`, `"24h"`, `"1h30m"`, `"500ms"`.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, Serializer, de};

/// Units accepted after a number, longest first so that `ms` wins over `m`.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a humane duration: one or more `<digits><unit>` groups, units `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "expected a duration such as \"30s\", \"15m\", \"24h\" or \"1h30m\" (units ms, s, m, h, d), got {text:?}"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut millis: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, factor) = UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        millis = number
            .checked_mul(*factor)
            .and_then(|m| millis.checked_add(m))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    Ok(Duration::from_millis(millis))
}

/// Writes a duration in the same humane form (`"1h30m"`, `"45s"`, `"250ms"`, `"48h"`, `"0s"`).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    // Days are accepted but not written: "24h" reads better than "1d" in a session policy.
    for (unit, factor) in UNITS.iter().rev().skip(1) {
        if millis >= *factor {
            out.push_str(&format!("{}{unit}", millis / factor));
            millis %= factor;
        }
    }
    out
}

/// A duration read from a humane string; used in the raw (file-shaped) model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Humane(pub Duration);

impl<'de> Deserialize<'de> for Humane {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Humane;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\", \"15m\" or \"24h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Humane, E> {
                parse_duration(v).map(Humane).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// `serialize_with` helper: a duration as its humane string.
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_combined_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "30", "s", "30 s", "1.5h", "-3s", "10y", "h1"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
        assert!(
            parse_duration("99999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn formats_back_to_the_same_form() {
        for text in ["30s", "15m", "24h", "1h30m", "250ms", "0s", "1m0s500ms"] {
            let again = format_duration(parse_duration(text).unwrap());
            assert_eq!(
                parse_duration(&again).unwrap(),
                parse_duration(text).unwrap()
            );
        }
        assert_eq!(format_duration(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(
            format_duration(Duration::from_millis(5_400_250)),
            "1h30m250ms"
        );
    }
}
