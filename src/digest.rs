//! Content digests: `sha256:<64 lowercase hex>` held as 32-byte arrays, with the sets and
//! maps every stage keys by digest. Pure values: no I/O.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 content digest, the identity of every manifest and blob.
#[derive(Clone, Copy)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest as four big-endian words: comparing them compares the bytes in order,
    /// inline, where a byte-array comparison is a call to `memcmp` (a sixth of the
    /// planner's time at 1M manifests, by `perf`).
    #[inline]
    fn words(&self) -> [u64; 4] {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.0[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        [w(0), w(1), w(2), w(3)]
    }
}

impl PartialEq for Digest {
    #[inline]
    fn eq(&self, other: &Digest) -> bool {
        self.words() == other.words()
    }
}

impl Eq for Digest {}

impl PartialOrd for Digest {
    #[inline]
    fn partial_cmp(&self, other: &Digest) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Digest {
    #[inline]
    fn cmp(&self, other: &Digest) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl Digest {
    /// Parses exactly `sha256:<64 lowercase hex>`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Digest> {
        Self::from_hex(s.strip_prefix("sha256:")?)
    }

    /// Parses exactly 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        let bytes: &[u8; 64] = hex.as_bytes().try_into().ok()?;
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Digest(out))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    /// The digest of everything `r` reads, read in pieces (a blob of any size).
    pub fn of_reader(mut r: impl std::io::Read) -> std::io::Result<Digest> {
        use sha2::Digest as _;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(Digest(h.finalize().into())),
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The 64 hex characters, without the algorithm prefix.
    pub fn hex(&self) -> String {
        self.hex_buf().as_str().to_owned()
    }

    /// The 64 hex characters on the stack (paths and output built without allocating).
    pub fn hex_buf(&self) -> HexBuf {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        HexBuf(out)
    }

    /// The first 12 hex characters, as the original tool prints them.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// A digest's 64 lowercase hex characters, held inline.
#[derive(Clone, Copy)]
pub struct HexBuf([u8; 64]);

impl HexBuf {
    /// The characters as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // sha256 output is uniform: its first 8 bytes are already a good hash.
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// A hasher that passes a digest's first 8 bytes through instead of rehashing them.
#[derive(Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by digest, hashed by [`DigestHasher`].
pub type DigestMap<V> = HashMap<Digest, V, BuildHasherDefault<DigestHasher>>;
/// A set of digests, hashed by [`DigestHasher`].
pub type DigestSet = HashSet<Digest, BuildHasherDefault<DigestHasher>>;

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex_buf().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.short())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a digest sha256:<64 hex>"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_as_their_bytes_do() {
        let ds: Vec<Digest> = (0u32..2000).map(|i| Digest::of(&i.to_le_bytes())).collect();
        for a in ds.iter().take(200) {
            for b in &ds {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0));
                assert_eq!(a == b, a.0 == b.0);
            }
        }
        let mut x = [7u8; 32];
        let y = x;
        x[31] = 8;
        assert!(Digest(y) < Digest(x) && Digest(x) != Digest(y));
    }

    #[test]
    fn parses_only_the_strict_form() {
        let hex = "a".repeat(64);
        let d = Digest::parse(&format!("sha256:{hex}")).expect("valid digest");
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(d.short(), "aaaaaaaaaaaa");
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(Digest::parse(&format!("sha256:{}", "a".repeat(63))).is_none());
        assert!(Digest::parse(&format!("sha512:{hex}")).is_none());
        assert!(Digest::parse(&format!("sha256:{hex}\n")).is_none());
        assert!(Digest::parse("").is_none());
    }

    #[test]
    fn hex_round_trips() {
        for i in 0u32..1000 {
            let d = Digest::of(&i.to_le_bytes());
            assert_eq!(d.hex(), hex::encode(d.0));
            assert_eq!(Digest::from_hex(d.hex_buf().as_str()), Some(d));
        }
        assert!(Digest::from_hex(&format!("{}g", "0".repeat(63))).is_none());
        assert!(Digest::from_hex(&format!("{}é", "0".repeat(62))).is_none());
    }

    #[test]
    fn digest_of_matches_known_value() {
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
