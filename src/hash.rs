//! Hashes the crate has already computed: maps keyed by them, and Redis keys written from
//! them.

use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for maps whose keys are already keyed 64-bit hashes (seeded at random per map, so
/// nobody outside can aim collisions): hashing them again would only cost time.
pub(crate) type PreHashed = BuildHasherDefault<PassThrough>;

/// See [`PreHashed`].
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the maps; fold anything else in, never panic.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// `prefix` followed by `digest` in lower-case hex: a Redis key. Built by hand, with one
/// allocation: it runs on every request a Redis store decides.
#[cfg(feature = "redis")]
pub(crate) fn prefixed_hex(prefix: &str, digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(prefix.len() + 2 * digest.len());
    out.push_str(prefix);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    #[test]
    fn prefixed_hex_is_lower_case_hex_after_the_prefix() {
        assert_eq!(
            super::prefixed_hex("p:", &[0x00, 0x0f, 0xab, 0xff]),
            "p:000fabff"
        );
        assert_eq!(super::prefixed_hex("", &[]), "");
    }
}
