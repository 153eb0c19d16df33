//! The JWK Set and JWK parsers (`KeySet::from_jwks_json`, `Key::from_jwk_json`).
//!
//! Input: UTF-8 text, a JWK Set or a single JWK.
//!
//! Asserted: no panic; a parsed set is non-empty with unique key ids, and `select` finds each
//! key by its own id and algorithm; every key taken comes from an entry meant for signatures
//! (`use` absent or `sig`, `key_ops` absent or containing `verify`, no private `d` outside
//! `oct`) whose `alg`, when given, is the key's algorithm.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_bearer::keys::{Key, KeySet};
use tower_bearer::testing::alg_name;

/// Whether a JWK entry may yield a verification key of algorithm `alg`.
fn usable(entry: &Value, alg: &str) -> bool {
    let use_ok = entry.get("use").is_none_or(|u| u == "sig");
    let ops_ok = entry.get("key_ops").is_none_or(|ops| {
        ops.as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"))
    });
    let private = entry.get("d").is_some() && entry.get("kty").is_none_or(|k| k != "oct");
    let alg_ok = entry.get("alg").is_none_or(|a| a == alg);
    use_ok && ops_ok && !private && alg_ok
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(set) = KeySet::from_jwks_json(text) {
        assert!(!set.is_empty());
        let doc: Value = serde_json::from_str(text).expect("a parsed set is JSON");
        let entries = doc["keys"].as_array().expect("keys array");
        let mut kids = HashSet::new();
        for key in set.iter() {
            let alg = alg_name(key.algorithm());
            match key.kid() {
                Some(kid) => {
                    assert!(kids.insert(kid.to_owned()), "duplicate kid {kid:?}");
                    let found = set.select(Some(kid), key.algorithm()).expect("select");
                    assert_eq!(found.kid(), Some(kid));
                    assert!(
                        entries
                            .iter()
                            .any(|e| e.get("kid").and_then(Value::as_str) == Some(kid)
                                && usable(e, &alg)),
                        "key {kid:?} from an entry not meant for signatures"
                    );
                }
                None => assert!(
                    entries.iter().any(|e| usable(e, &alg)),
                    "kid-less key from an entry not meant for signatures"
                ),
            }
        }
    }

    if let Ok(key) = Key::from_jwk_json(text) {
        let entry: Value = serde_json::from_str(text).expect("a parsed JWK is JSON");
        assert!(usable(&entry, &alg_name(key.algorithm())));
        assert_eq!(key.kid(), entry.get("kid").and_then(Value::as_str));
    }
});
