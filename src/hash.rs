//! Maps keyed by a hash the crate has already computed.

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
