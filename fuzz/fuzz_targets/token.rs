//! The token decoder and the claims checks: `Jwt::authenticate` with a frozen clock on tokens
//! built from fuzzer-chosen header and payload bytes, signed by a key the verifier trusts,
//! carrying fuzzer-chosen or no signature, or given whole as text.
//!
//! Input: one mode byte, then up to three segments separated by `0xFF` (a byte no JSON text
//! holds): header, payload, signature.
//!
//! | `mode % 6` | token |
//! |---|---|
//! | 0 | `b64(header).b64(payload)` signed by a per-process HS256 key (kid `fz-hs`) |
//! | 1 | the same, signed by a per-process ES256 key (kid `fz-ec`) |
//! | 2 | `b64(header).b64(payload).b64(signature bytes)` |
//! | 3 | `b64(header).b64(payload).` (no signature) |
//! | 4 | `b64(header).b64(payload).signature` (the signature segment as text) |
//! | 5 | everything after the mode byte, as the token text |
//!
//! `(mode / 6) % 2` picks the verifier: defaults, or strict (leeway 0, `at+jwt`, maximum
//! lifetime, no cache).
//!
//! Asserted: no panic; the answer is synchronous (static keys); an accepted token either was
//! signed in this iteration by a trusted key (modes 0 and 1) or carries the signed content of
//! a valid interoperability vector — nothing else is ever accepted; and every accepted token
//! meets an independent statement of the claim rules (`common::assert_acceptable`).
#![no_main]

#[path = "common.rs"]
mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Profile;
use libfuzzer_sys::fuzz_target;
use tower_bearer::extract::{BearerToken, TokenSource};
use tower_bearer::validate::Authenticator;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let profile = if (mode / 6) % 2 == 0 {
        Profile::Default
    } else {
        Profile::Strict
    };
    let mut segments = rest.splitn(3, |b| *b == 0xFF);
    let header = segments.next().unwrap_or_default();
    let payload = segments.next().unwrap_or_default();
    let signature = segments.next().unwrap_or_default();
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));

    let (token, signed_by_us) = match mode % 6 {
        0 => (
            common::hs().sign_parts(&B64.encode(header), &B64.encode(payload)),
            true,
        ),
        1 => (
            common::ec().sign_parts(&B64.encode(header), &B64.encode(payload)),
            true,
        ),
        2 => (format!("{input}.{}", B64.encode(signature)), false),
        3 => (format!("{input}."), false),
        4 => (
            format!("{input}.{}", String::from_utf8_lossy(signature)),
            false,
        ),
        _ => (String::from_utf8_lossy(rest).into_owned(), false),
    };

    let jwt = common::jwt(profile);
    let bearer = BearerToken::new(token.as_str(), TokenSource::Authorization);
    let result = jwt
        .authenticate(&bearer)
        .into_ready()
        .expect("static keys answer synchronously");
    // The synchronous entry point agrees.
    assert_eq!(result.is_ok(), jwt.verify(&token).is_ok());

    common::trace(format_args!(
        "token mode {} {profile:?}: {}",
        mode % 6,
        match &result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("refused: {e}"),
        }
    ));
    match result {
        Ok(principal) => {
            let signing_input = token.rsplit_once('.').expect("three parts").0;
            assert!(
                signed_by_us || common::valid_signing_inputs().contains(signing_input),
                "a token without a valid signature was accepted (mode {mode})"
            );
            common::assert_acceptable(&token, profile);
            assert!(principal.expires_at().is_some());
        }
        Err(err) => {
            // Error text is short, printable and free of token material.
            let text = err.to_string();
            assert!(text.len() < 200 && text.chars().all(|c| matches!(c, ' '..='~')));
            // No error text holds a digit, so a part of 9 or more characters with one showing
            // up would be a leak (shorter or digit-free parts can spell error words).
            let telling = |p: &&str| p.len() >= 9 && p.bytes().any(|b| b.is_ascii_digit());
            for part in token.split('.').filter(telling) {
                assert!(!text.contains(part), "token material in the error");
            }
            // `Debug` also shows the (attacker-chosen) kid, so it is checked for the one part
            // no header can anticipate: a signature made after the header was chosen.
            if signed_by_us {
                let sig = token.rsplit('.').next().expect("a signature");
                assert!(!format!("{err:?}").contains(sig), "signature in Debug");
            }
        }
    }
});
