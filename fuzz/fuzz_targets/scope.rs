//! The scope-policy parser (`ScopePolicy::parse`, the string form of route and method
//! policies) and scope-claim parsing (`scope`, `scp`, any claim path).
//!
//! Input: UTF-8 text. The whole text is parsed as a policy; it is also read as
//! `path "\n" claims-JSON` for the claim parsers, and as a space-delimited scope string.
//!
//! Asserted: no panic; a parsed policy prints to a string that parses back to the same
//! policy; it is granted by exactly the scopes it mentions and refused with none (parsed
//! policies are never trivially true); the scopes a claim yields are non-empty, unique,
//! sorted and free of spaces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_bearer::principal::{Principal, ScopeClaim, Scopes, TokenFingerprint};
use tower_bearer::scope::ScopePolicy;

fn check_scopes(scopes: &Scopes) {
    let v: Vec<&str> = scopes.iter().collect();
    assert!(v.iter().all(|s| !s.is_empty()), "empty scope");
    assert!(v.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
    for s in &v {
        assert!(scopes.contains(s));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(policy) = ScopePolicy::parse(text) {
        let printed = policy.to_string();
        let again = ScopePolicy::parse(&printed).expect("printed policy parses");
        assert_eq!(again, policy, "round trip of {printed:?}");
        let mentioned = policy.mentioned();
        assert!(!mentioned.is_empty());
        assert!(policy.is_satisfied_by(&Scopes::new(mentioned.iter().copied())));
        assert!(!policy.is_satisfied_by(&Scopes::default()));
        let _ = policy.is_satisfied_by(&Scopes::from_space_delimited(text));
    }

    let scopes = Scopes::from_space_delimited(text);
    check_scopes(&scopes);
    assert!(scopes.iter().all(|s| !s.contains(' ')));

    let (path, json) = text.split_once('\n').unwrap_or(("scope", text));
    if let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(json) {
        let fp = TokenFingerprint::of_bytes(data);
        for claim in [ScopeClaim::default(), ScopeClaim::path(path)] {
            if let Ok(p) = Principal::from_claims_with(claims.clone(), fp, &claim) {
                check_scopes(p.scopes());
                assert_eq!(p.fingerprint(), fp);
            }
        }
    }
});
