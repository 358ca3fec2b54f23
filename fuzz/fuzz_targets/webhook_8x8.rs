//! 8x8 Chat Apps webhook bodies: `byocd::providers::eightbyeight::webhook::parse` on arbitrary
//! bytes. The only property checked is the one the parser documents: it never panics (a body it
//! cannot read is a `ParseError`, which the HTTP layer quarantines).

#![no_main]

use byocd::providers::eightbyeight::webhook;
use libfuzzer_sys::fuzz_target;

/// The sub-accounts the seed corpus (copied from `tests/fixtures/8x8`) is written for.
const SUB_ACCOUNT: &str = "acme-whatsapp";
const OTHER_SUB_ACCOUNT: &str = "acme-rcs";

fuzz_target!(|data: &[u8]| {
    // A body naming another sub-account is refused early; parse it again as that channel's so
    // the RCS seeds reach the content and receipt code too.
    if let Err(e) = webhook::parse(data, SUB_ACCOUNT)
        && e.reason.starts_with("payload.subAccountId")
    {
        let _ = webhook::parse(data, OTHER_SUB_ACCOUNT);
    }
});
