//! Kaleyra RCS callback bodies: `byocd::providers::kaleyra::webhook::parse_callbacks` on
//! arbitrary bytes. The only property checked is the one the parser documents: it never panics
//! (a body it cannot read is a `ParseError`, which the HTTP layer quarantines).

#![no_main]

use byocd::providers::kaleyra::webhook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = webhook::parse_callbacks(data);
});
