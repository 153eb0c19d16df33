//! Strict JSON: objects whose member names are unique at every depth, and the JWS header read
//! without a map.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize as _, Deserializer};
use serde_json::{Map, Value};

/// A JSON object whose members are unique, in it and in every object it contains (RFC 7515
/// §5.2 / RFC 8725 §3.1: a parser must refuse duplicate member names rather than pick one).
pub(crate) struct StrictObject(pub(crate) Map<String, Value>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrictObject, A::Error> {
                strict_map(map).map(StrictObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value, with unique member names in every object it contains, however deep: a
/// token or proof whose `cnf`, `jwk` or any other object names a member twice is refused, so
/// no two parsers can read it differently.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// Builds a `Value` as `serde_json`'s own visitor does, objects through [`strict_map`].
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity; `serde_json` makes anything else `null` too.
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        strict_map(map).map(Value::Object)
    }
}

/// The members of an object, refusing a name seen before (at this level; values are checked
/// by [`StrictValue`] at theirs).
fn strict_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Map<String, Value>, A::Error> {
    let mut out = Map::new();
    while let Some(key) = map.next_key::<String>()? {
        let StrictValue(value) = map.next_value()?;
        if out.insert(key, value).is_some() {
            return Err(serde::de::Error::custom("duplicate member"));
        }
    }
    Ok(out)
}

/// Decodes a base64url (unpadded, canonical) part into `buf`, or into `heap` when it does not
/// fit; `None` when it is not base64url.
pub(crate) fn decode_b64<'b>(
    part: &[u8],
    buf: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // `decode_slice` writes at most the decoded length, which is at most 3/4 of the input.
    if part.len() / 4 * 3 + 3 <= buf.len() {
        let n = URL_SAFE_NO_PAD.decode_slice(part, buf).ok()?;
        return Some(&buf[..n]);
    }
    URL_SAFE_NO_PAD.decode_vec(part, heap).ok()?;
    Some(heap)
}

/// A base64url part that must hold a [`StrictObject`] (a JWS payload or a DPoP proof's
/// header), decoded on the stack when it fits; `None` when it does not.
pub(crate) fn decode_object(part: &[u8]) -> Option<Map<String, Value>> {
    let mut buf = [0u8; 2048];
    let mut heap = Vec::new();
    let bytes = decode_b64(part, &mut buf, &mut heap)?;
    serde_json::from_slice::<StrictObject>(bytes)
        .ok()
        .map(|o| o.0)
}

/// A JWS protected header, reduced to what verification reads: `alg`, `kid` and `typ` borrowed
/// from the decoded bytes, and whether `crit`, `enc` or `zip` are present. Parsed as strictly
/// as [`StrictObject`] (duplicate members refused, every value fully checked), without building
/// a map for the usual three members.
pub(crate) struct JoseHeader<'a> {
    pub(crate) alg: Member<'a>,
    pub(crate) kid: Member<'a>,
    pub(crate) typ: Member<'a>,
    pub(crate) crit: bool,
    pub(crate) enc_or_zip: bool,
}

/// Up to this many member names, duplicates are looked for in a list.
const FEW_MEMBERS: usize = 8;

/// One header member: absent, a string, or a value of another type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Member<'a> {
    Absent,
    Str(Cow<'a, str>),
    Other,
}

impl<'de> serde::Deserialize<'de> for JoseHeader<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JoseHeader<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut header = JoseHeader {
                    alg: Member::Absent,
                    kid: Member::Absent,
                    typ: Member::Absent,
                    crit: false,
                    enc_or_zip: false,
                };
                // Member names seen so far: a header has a handful, searched in a list; a
                // forged one with hundreds goes to a set, so the check stays linear.
                let mut seen: Vec<Cow<'de, str>> = Vec::new();
                let mut many: HashSet<Cow<'de, str>> = HashSet::new();
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    if many.is_empty() && seen.len() == FEW_MEMBERS {
                        many.extend(seen.drain(..));
                    }
                    let duplicate = if many.is_empty() {
                        seen.contains(&name)
                    } else {
                        many.contains(&name)
                    };
                    if duplicate {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    let slot = match &*name {
                        "alg" => Some(&mut header.alg),
                        "kid" => Some(&mut header.kid),
                        "typ" => Some(&mut header.typ),
                        other => {
                            header.crit |= other == "crit";
                            header.enc_or_zip |= other == "enc" || other == "zip";
                            None
                        }
                    };
                    match slot {
                        Some(slot) => *slot = map.next_value::<Member<'de>>()?,
                        // Checked as a value, then dropped.
                        None => drop(map.next_value::<StrictValue>()?),
                    }
                    if many.is_empty() {
                        seen.push(name);
                    } else {
                        many.insert(name);
                    }
                }
                Ok(header)
            }
        }
        d.deserialize_map(V)
    }
}

/// A member name, borrowed when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Member<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Member<'de>, E> {
                Ok(Member::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_unit<E>(self) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            // Arrays and objects are checked as `StrictValue`s are, then dropped.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
                StrictVisitor.visit_seq(seq).map(|_| Member::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
                strict_map(map).map(|_| Member::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so that failures replay.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn string(&mut self) -> String {
            const PIECES: [&str; 10] = ["a", "k", "é", "\"", "\\", "\n", "€", "𝄞", "\u{1}", "x"];
            (0..self.below(4))
                .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
                .collect()
        }

        fn value(&mut self, depth: u32) -> Value {
            match self.below(if depth == 0 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 0),
                2 => Value::from(self.next()),
                3 => Value::from(self.next() as i64),
                4 => Value::from((self.next() as i64 as f64) / 1e3),
                5 => Value::String(self.string()),
                6 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
                _ => Value::Object(
                    (0..self.below(5))
                        .map(|i| (format!("{}{i}", self.string()), self.value(depth - 1)))
                        .collect(),
                ),
            }
        }
    }

    /// `v` as JSON text, with the first member of its `dup`-th non-empty object (in
    /// document order) written twice; `objects` counts them.
    fn write_with_duplicate(v: &Value, dup: usize, objects: &mut usize, out: &mut String) {
        match v {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_with_duplicate(item, dup, objects, out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                let twice = !members.is_empty() && *objects == dup;
                if !members.is_empty() {
                    *objects += 1;
                }
                out.push('{');
                for (i, (k, m)) in members.iter().enumerate() {
                    for _ in 0..if twice && i == 0 { 2 } else { 1 } {
                        if !out.ends_with('{') {
                            out.push(',');
                        }
                        out.push_str(&serde_json::to_string(k).unwrap());
                        out.push(':');
                        write_with_duplicate(m, dup, objects, out);
                    }
                }
                out.push('}');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
    }

    #[test]
    fn strict_values_read_what_serde_json_reads_and_refuse_nested_duplicates() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut refused = 0;
        for _ in 0..2_000 {
            // An object at the top, as a token's header and claims are.
            let v = Value::Object(
                (0..1 + g.below(3))
                    .map(|i| (format!("m{i}"), g.value(4)))
                    .collect(),
            );
            let text = serde_json::to_string(&v).unwrap();
            let StrictValue(strict) = serde_json::from_str(&text).unwrap();
            assert_eq!(
                strict,
                serde_json::from_str::<Value>(&text).unwrap(),
                "{text}"
            );
            // One object, at any depth, names its first member twice: serde_json takes the
            // last; the strict reader refuses the document.
            let mut objects = 0;
            write_with_duplicate(&v, usize::MAX, &mut objects, &mut String::new());
            let mut dup = String::new();
            let which = g.below(objects as u64) as usize;
            write_with_duplicate(&v, which, &mut 0, &mut dup);
            assert!(serde_json::from_str::<Value>(&dup).is_ok(), "{dup}");
            assert!(serde_json::from_str::<StrictValue>(&dup).is_err(), "{dup}");
            refused += 1;
        }
        assert_eq!(refused, 2_000);
    }

    fn header(json: &str) -> Option<JoseHeader<'_>> {
        serde_json::from_str::<JoseHeader<'_>>(json).ok()
    }

    #[test]
    fn header_members_are_borrowed_and_checked() {
        let h =
            header(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt","x5t":[1,{"a":null}]}"#).unwrap();
        assert_eq!(h.alg, Member::Str(Cow::Borrowed("RS256")));
        assert!(matches!(h.kid, Member::Str(Cow::Borrowed("k1"))));
        assert_eq!(h.typ, Member::Str(Cow::Borrowed("at+jwt")));
        assert!(!h.crit && !h.enc_or_zip);
        // Escapes are decoded (in names too), other types are `Other`.
        let h = header(r#"{"al\u0067":"HS\u0032\u0035\u0036","kid":7,"crit":["exp"]}"#).unwrap();
        assert_eq!(h.alg, Member::Str(Cow::Owned("HS256".into())));
        assert_eq!(
            (h.kid, h.typ, h.crit),
            (Member::Other, Member::Absent, true)
        );
        assert!(header(r#"{"alg":"none","zip":"DEF"}"#).unwrap().enc_or_zip);
    }

    #[test]
    fn header_is_as_strict_as_a_strict_object() {
        for json in [
            r#"{"alg":"RS256","alg":"HS256"}"#,
            r#"{"alg":"RS256","al\u0067":"HS256"}"#,
            r#"{"x":1,"x":2,"alg":"RS256"}"#,
            r#"{"alg":"RS256","x":"\ud800"}"#,
            r#"{"alg":["\ud800"]}"#,
            r#"{"alg":"RS256"} x"#,
            r#"{"alg":1e400}"#,
            r#"["alg"]"#,
            r#""alg""#,
            r#"{"alg":"RS256""#,
        ] {
            assert!(header(json).is_none(), "{json}");
            assert!(
                serde_json::from_str::<StrictObject>(json).is_err(),
                "{json}"
            );
        }
        // Past the list, in the set: still refused, still linear.
        let many: String = (0..600).map(|i| format!(r#""m{i}":0,"#)).collect();
        let ok = format!(r#"{{{many}"alg":"RS256"}}"#);
        assert!(header(&ok).is_some());
        for again in ["m3", "m500", "m599"] {
            let dup = format!(r#"{{{many}"{again}":1,"alg":"RS256"}}"#);
            assert!(header(&dup).is_none(), "{again}");
            assert!(serde_json::from_str::<StrictObject>(&dup).is_err());
        }
        // Below the top level too, at any depth, in any member.
        for nested in [
            r#"{"alg":"RS256","jwk":{"k":1,"k":2}}"#,
            r#"{"alg":{"a":1,"a":1}}"#,
            r#"{"alg":"RS256","x":[0,[{"b":{"c":1,"c":1}}]]}"#,
        ] {
            assert!(header(nested).is_none(), "{nested}");
            assert!(
                serde_json::from_str::<StrictObject>(nested).is_err(),
                "{nested}"
            );
        }
        let fine = r#"{"alg":"RS256","jwk":{"k":1,"K":2,"x":{"k":1}},"x":[{"a":1},{"a":2}]}"#;
        assert!(header(fine).is_some());
        assert!(serde_json::from_str::<StrictObject>(fine).is_ok());
    }
}
