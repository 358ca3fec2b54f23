//! Who an end user is, across providers, and the key byocd sends to Salesforce for them.
//!
//! # The end-user key (`from` / `endUserClientId`)
//!
//! One rule for every channel:
//!
//! 1. the phone number in E.164 with `+` (`+447700900123`), when the provider gives one;
//! 2. otherwise the provider's own user id — for WhatsApp the business-scoped user id (BSUID,
//!    `US.13491208655302741918`), which 8x8 sends for users who hide their number.
//!
//! The result is at most 240 characters (an E.164 number is at most 16; a BSUID is short), so
//! it always fits Salesforce's limit. A phone number is what reps recognise and what Salesforce
//! shows; the BSUID keeps users without a number reachable. An end user first seen with both is
//! keyed by the number; the BSUID is kept beside it, so a later message that carries only the
//! BSUID still finds the same end user (the store resolves either identifier).

use std::fmt;

use serde::Serialize;

/// A phone number in E.164 form: `+` then 7 to 15 digits, not starting with 0.
///
/// The length rule and its sources: ITU-T Rec. E.164 (11/2010) §6 caps an international number
/// (country code and national significant number together) at 15 digits and sets no minimum;
/// the shortest numbers in service are 7 digits, a 3-digit country code and a 4-digit subscriber
/// number, as in Niue (+683 XXXX) and Tokelau (+690 XXXX) by the national numbering plans
/// those countries notified to the ITU (published at <https://www.itu.int/oth/T0202>). Fewer
/// than 7 digits is no country's complete number, so it is refused rather than guessed at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct E164(String);

/// Fewest digits of an E.164 number (see [`E164`]): Niue's and Tokelau's 7.
pub const MIN_DIGITS: usize = 7;
/// Most digits of an E.164 number: ITU-T E.164 §6's 15.
pub const MAX_DIGITS: usize = 15;

impl E164 {
    /// Normalises a number written with or without `+`, with spaces, dashes, dots or brackets
    /// (`447700900123`, `+44 7700 900123`, `+1 (415) 555-0100`). A national number without its
    /// country code cannot be normalised and is refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed.strip_prefix("00").unwrap_or(trimmed)),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                other => return Err(format!("`{other}` is not part of a phone number")),
            }
        }
        if digits.starts_with('0') {
            return Err(if plus {
                "a country code never starts with 0".into()
            } else {
                "a national number (leading 0) needs its country code".into()
            });
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(format!(
                "an international number has {MIN_DIGITS} to {MAX_DIGITS} digits, got {}",
                digits.len()
            ));
        }
        Ok(Self(format!("+{digits}")))
    }

    /// With the `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits only, without the `+` (Kaleyra's send API).
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `id` has the form of a WhatsApp business-scoped user id: a two-letter upper-case
/// country code, a dot, then letters and digits (`US.13491208655302741918`). 8x8's older v2
/// webhooks put the phone digits in the same field; those are not BSUIDs.
pub fn is_bsuid(id: &str) -> bool {
    let Some((country, rest)) = id.split_once('.') else {
        return false;
    };
    country.len() == 2
        && country.chars().all(|c| c.is_ascii_uppercase())
        && !rest.is_empty()
        && rest.len() <= 64
        && rest.chars().all(|c| c.is_ascii_alphanumeric())
}

/// An end user as a provider identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndUser {
    /// Phone number, when the provider gives one.
    pub msisdn: Option<E164>,
    /// The provider's own user id (WhatsApp BSUID), when it gives one.
    pub channel_user_id: Option<String>,
    /// Display name (WhatsApp profile name).
    pub display_name: Option<String>,
}

impl EndUser {
    /// An end user known by phone number only.
    pub fn phone(msisdn: E164) -> Self {
        Self {
            msisdn: Some(msisdn),
            channel_user_id: None,
            display_name: None,
        }
    }

    /// The key sent to Salesforce as `from` / `endUserClientId` (see the module docs), or
    /// `None` when the provider gave neither a number nor a user id.
    pub fn salesforce_key(&self) -> Option<String> {
        self.msisdn
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .or_else(|| self.channel_user_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_to_e164() {
        for raw in [
            "447700900123",
            "+447700900123",
            "+44 7700 900123",
            "0044 7700-900123",
        ] {
            assert_eq!(E164::parse(raw).unwrap().as_str(), "+447700900123", "{raw}");
        }
        assert_eq!(
            E164::parse("+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
        assert_eq!(
            E164::parse("+919158812345").unwrap().digits(),
            "919158812345"
        );
    }

    #[test]
    fn seven_digit_numbers_of_niue_and_tokelau_are_numbers() {
        // +683 4002 (Niue) and +690 3001 (Tokelau): 3-digit country code, 4-digit subscriber.
        assert_eq!(E164::parse("+683 4002").unwrap().as_str(), "+6834002");
        assert_eq!(E164::parse("6903001").unwrap().digits(), "6903001");
        // The longest: 15 digits.
        assert_eq!(
            E164::parse("+123456789012345").unwrap().as_str(),
            "+123456789012345"
        );
    }

    #[test]
    fn what_is_not_a_number_is_explained() {
        assert!(
            E164::parse("07700900123")
                .unwrap_err()
                .contains("country code")
        );
        assert!(
            E164::parse("+0447700900123")
                .unwrap_err()
                .contains("never starts with 0")
        );
        assert!(
            E164::parse("+12345")
                .unwrap_err()
                .contains("7 to 15 digits")
        );
        assert!(
            E164::parse("+683123")
                .unwrap_err()
                .contains("7 to 15 digits, got 6")
        );
        assert!(
            E164::parse("+4477009001234567")
                .unwrap_err()
                .contains("7 to 15")
        );
        assert!(
            E164::parse("US.1234")
                .unwrap_err()
                .contains("not part of a phone number")
        );
        assert!(E164::parse("").is_err());
    }

    #[test]
    fn bsuids_are_told_apart_from_phone_digits() {
        assert!(is_bsuid("US.13491208655302741918"));
        assert!(is_bsuid("GB.abc123XYZ"));
        assert!(!is_bsuid("447700900123"));
        assert!(!is_bsuid("us.123"));
        assert!(!is_bsuid("USA.123"));
        assert!(!is_bsuid("US."));
        assert!(!is_bsuid("US.12-3"));
    }

    #[test]
    fn the_salesforce_key_prefers_the_number_and_falls_back_to_the_bsuid() {
        let both = EndUser {
            msisdn: Some(E164::parse("+447700900123").unwrap()),
            channel_user_id: Some("GB.998877".into()),
            display_name: Some("Sam".into()),
        };
        assert_eq!(both.salesforce_key().unwrap(), "+447700900123");
        let hidden = EndUser {
            msisdn: None,
            channel_user_id: Some("GB.998877".into()),
            display_name: None,
        };
        assert_eq!(hidden.salesforce_key().unwrap(), "GB.998877");
        let nobody = EndUser {
            msisdn: None,
            channel_user_id: None,
            display_name: None,
        };
        assert_eq!(nobody.salesforce_key(), None);
        assert!(both.salesforce_key().unwrap().len() <= 240);
    }
}
