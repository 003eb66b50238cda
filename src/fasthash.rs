//! A fast keyed hasher for the tables the proxy reads on every call, whose keys are not chosen by
//! clients: session and operation guids and secrets (random bytes issued by the backends) and backend
//! ids. SipHash, std's default, was a tenth of the instructions of a proxied call (callgrind,
//! `scripts/profile-callgrind.sh`); this hasher folds eight bytes at a time with one 64x64->128-bit
//! multiply. A client can look such a key up but never insert one, and the keys are per-process random,
//! so flooding a bucket is not possible. Tables keyed by what a client sends (user names) keep SipHash.

use std::hash::{BuildHasher, Hasher};

/// Builds [`KeyedHasher`]s with keys drawn once per table from std's random source.
#[derive(Clone, Debug)]
pub struct KeyedState {
    k0: u64,
    k1: u64,
}

impl Default for KeyedState {
    fn default() -> KeyedState {
        // std's RandomState carries per-process random keys; hashing two constants with it draws ours.
        let random = std::collections::hash_map::RandomState::new();
        KeyedState { k0: random.hash_one(0u8) | 1, k1: random.hash_one(1u8) | 1 }
    }
}

impl BuildHasher for KeyedState {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher { acc: self.k0, k: self.k1 }
    }
}

/// See the module doc.
pub struct KeyedHasher {
    acc: u64,
    k: u64,
}

/// The high and low halves of the 128-bit product, folded: every input bit reaches every output bit.
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.acc = fold(self.acc ^ v, self.k);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        fold(self.acc, self.k ^ 0x9e37_79b9_7f4a_7c15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_table_and_every_byte_counts() {
        let (a, b) = (KeyedState::default(), KeyedState::default());
        let key = [7u8; 16];
        assert_ne!(a.hash_one(key), b.hash_one(key), "each table draws its own keys");
        let base = a.hash_one(key);
        for i in 0..16 {
            let mut k = key;
            k[i] ^= 1;
            assert_ne!(a.hash_one(k), base, "byte {i} changes the hash");
        }
        // Lengths count: a short key is not its zero-padded long form.
        assert_ne!(a.hash_one(&[1u8, 0][..]), a.hash_one(&[1u8][..]));
    }

    #[test]
    fn random_guids_spread_over_the_buckets() {
        // hashbrown takes the low bits for the bucket and the top 7 for the control byte: both must vary.
        let s = KeyedState::default();
        let (mut low, mut top) = ([0u32; 64], [0u32; 128]);
        for i in 0u64..64_000 {
            let mut g = [0u8; 16];
            g[..8].copy_from_slice(&i.to_le_bytes()); // sequential, the worst case for a weak hash
            let h = s.hash_one(g);
            low[(h & 63) as usize] += 1;
            top[(h >> 57) as usize] += 1;
        }
        assert!(low.iter().all(|&n| (800..1200).contains(&n)), "low bits: {low:?}");
        assert!(top.iter().all(|&n| (350..650).contains(&n)), "top bits: {top:?}");
    }
}
