//! JSON read as the registry (Go's `encoding/json`) reads it: a document tree that keeps
//! every key of an object in order (duplicates too), keys matched to field names as Go
//! matches them, and every digest the document mentions anywhere. Pure.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::digest::Digest;

/// A JSON value with every object key kept, in document order, duplicates included
/// (serde_json's map keeps only the last of two equal keys; Go decodes both).
#[derive(Debug, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits 64 bits (signed or not).
    Int(i128),
    /// Any other number (a fraction or an exponent: no Go integer field takes it).
    Float(f64),
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// An array.
    Arr(Vec<Json<'a>>),
    /// An object: every key with its value, in document order.
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// Why a document, or a field of it, cannot be read one way only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (serde_json's message).
    #[error("unparsable JSON: {0}")]
    Unparsable(String),
    /// Several keys fill one Go field (Go merges them, the last winning field by field).
    #[error(
        "keys {first:?} and {second:?} both fill field {field:?} (Go's encoding/json folds case)"
    )]
    DuplicateKeys {
        /// The first key that fills it.
        first: String,
        /// The next key that fills it too.
        second: String,
        /// The Go field.
        field: String,
    },
    /// A field of a type Go's decoder refuses.
    #[error("field {field:?} is {found}, not {wanted}")]
    WrongType {
        /// The Go field.
        field: String,
        /// What the value is (`a number`).
        found: &'static str,
        /// What the field takes (`a string`).
        wanted: &'static str,
    },
    /// An integer field whose value does not fit 64 bits.
    #[error("field {field:?} overflows a 64-bit integer")]
    Overflow {
        /// The Go field.
        field: String,
    },
}

/// Parses a document; bytes that are not UTF-8 are read as U+FFFD, as Go does.
pub fn parse(text: &str) -> Result<Json<'_>, JsonError> {
    serde_json::from_str(text).map_err(|e| JsonError::Unparsable(e.to_string()))
}

/// [`JsonError::WrongType`] for `field` holding `found` where Go wants `wanted`.
fn wrong_type(field: &str, found: &Json, wanted: &'static str) -> JsonError {
    JsonError::WrongType {
        field: field.to_owned(),
        found: found.what(),
        wanted,
    }
}

/// Whether object key `key` fills the Go struct field whose JSON name is `field` (ASCII):
/// Go matches keys case-insensitively under Unicode simple folding, so `"Layers"`,
/// `"LAYERS"` and `"layerſ"` (U+017F) fill `layers`, and `"\u{212A}ind"` (Kelvin) fills
/// `kind`. The only non-ASCII runes that fold onto ASCII letters are those two.
pub fn key_is(key: &str, field: &str) -> bool {
    let mut k = key.chars();
    for f in field.bytes() {
        let c = match k.next() {
            Some('\u{17F}') => 's',
            Some('\u{212A}') => 'k',
            Some(c) => c,
            None => return false,
        };
        if !c.is_ascii() || !(c as u8).eq_ignore_ascii_case(&f) {
            return false;
        }
    }
    k.next().is_none()
}

/// A field read off an object as Go would fill it, or why that cannot be told.
pub type Field<'j, 'a> = Result<Option<&'j Json<'a>>, JsonError>;

impl<'a> Json<'a> {
    /// The value of the key that fills Go field `field`: `None` when no key does; an error
    /// when several do (Go merges them, last one winning field by field: regsweep does
    /// not guess at that, the caller fails closed).
    pub fn field<'j>(&'j self, field: &str) -> Field<'j, 'a> {
        let Json::Obj(entries) = self else {
            return Ok(None);
        };
        let mut found: Option<(&str, &Json)> = None;
        for (k, v) in entries {
            if key_is(k, field) {
                if let Some((first, _)) = found {
                    return Err(JsonError::DuplicateKeys {
                        first: first.to_owned(),
                        second: k.to_string(),
                        field: field.to_owned(),
                    });
                }
                found = Some((k, v));
            }
        }
        Ok(found.map(|(_, v)| v))
    }

    /// A string field: absent or `null` is `None` (Go leaves the field empty); any other
    /// type is an error, as Go's decoder reports it.
    pub fn str_field(&self, field: &str) -> Result<Option<&str>, JsonError> {
        match self.field(field)? {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Str(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(field, other, "a string")),
        }
    }

    /// An integer field (Go `int`/`int64`): absent or `null` is `None`.
    pub fn int_field(&self, field: &str) -> Result<Option<i64>, JsonError> {
        match self.field(field)? {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Int(i)) => i64::try_from(*i)
                .map(Some)
                .map_err(|_| JsonError::Overflow {
                    field: field.to_owned(),
                }),
            Some(other) => Err(wrong_type(field, other, "an integer")),
        }
    }

    /// An array field: absent or `null` is `None`.
    pub fn arr_field<'j>(&'j self, field: &str) -> Result<Option<&'j [Json<'a>]>, JsonError> {
        match self.field(field)? {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Arr(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(field, other, "an array")),
        }
    }

    /// An object field (a Go struct or pointer to one): absent or `null` is `None`.
    pub fn obj_field<'j>(&'j self, field: &str) -> Result<Option<&'j Json<'a>>, JsonError> {
        match self.field(field)? {
            None | Some(Json::Null) => Ok(None),
            Some(o @ Json::Obj(_)) => Ok(Some(o)),
            Some(other) => Err(wrong_type(field, other, "an object")),
        }
    }

    /// What sort of value this is, for messages.
    pub fn what(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) | Json::Float(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }

    /// Every digest mentioned anywhere in the document: in any string and any key, at any
    /// depth, under duplicate keys too.
    pub fn mentions(&self, out: &mut Mentions) {
        match self {
            Json::Str(s) => out.find_in(s),
            Json::Arr(a) => a.iter().for_each(|v| v.mentions(out)),
            Json::Obj(o) => {
                for (k, v) in o {
                    out.find_in(k);
                    v.mentions(out);
                }
            }
            Json::Null | Json::Bool(_) | Json::Int(_) | Json::Float(_) => {}
        }
    }
}

/// Digests a document mentions: sha256 ones, and those of the other algorithms the
/// registry accepts (sha384, sha512), which name a blob only through a repository's link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mentions {
    /// `sha256:<64 hex>` mentions.
    pub sha256: Vec<Digest>,
    /// `sha384:<96 hex>` and `sha512:<128 hex>` mentions, as `algo:<lowercase hex>`.
    pub other: Vec<String>,
}

/// The digest algorithms the registry accepts, with their hex lengths.
const ALGORITHMS: [(&str, usize); 3] = [("sha256:", 64), ("sha384:", 96), ("sha512:", 128)];

impl Mentions {
    /// Adds every digest written anywhere in `s` (hex in either case; more hex after the
    /// digest's length is ignored): generous, since a mention only ever adds keeps.
    pub fn find_in(&mut self, s: &str) {
        // Most strings (keys, media types) are shorter than the shortest digest.
        if s.len() < "sha256:".len() + 64 {
            return;
        }
        let b = s.as_bytes();
        for (at, _) in s.match_indices("sha") {
            for (algo, len) in ALGORITHMS {
                let start = at + algo.len();
                let Some(hex) = b.get(start..start + len) else {
                    continue;
                };
                if !b[at..].starts_with(algo.as_bytes()) || !hex.iter().all(u8::is_ascii_hexdigit) {
                    continue;
                }
                let hex = String::from_utf8_lossy(hex).to_ascii_lowercase();
                if len == 64 {
                    self.sha256.extend(Digest::from_hex(&hex));
                } else {
                    self.other.push(format!("{algo}{hex}"));
                }
            }
        }
    }

    /// Sorts and removes duplicates.
    pub fn finish(&mut self) {
        self.sha256.sort_unstable();
        self.sha256.dedup();
        self.other.sort_unstable();
        self.other.dedup();
    }
}

/// Every digest a document mentions, sorted and deduplicated.
pub fn mentions(doc: &Json) -> Mentions {
    let mut m = Mentions::default();
    doc.mentions(&mut m);
    m.finish();
    m
}

/// A key, borrowed from the input where it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Json<'de>, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Json<'de>, E> {
                Ok(Json::Int(i128::from(i)))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Json<'de>, E> {
                Ok(Json::Int(i128::from(u)))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Json<'de>, E> {
                Ok(Json::Float(x))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(Json::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
                let mut v = Vec::new();
                while let Some((Key(k), x)) = map.next_entry()? {
                    v.push((k, x));
                }
                Ok(Json::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_as_go_folds_them() {
        for k in ["layers", "Layers", "LAYERS", "layerſ", "LAYERſ"] {
            assert!(key_is(k, "layers"), "{k}");
        }
        assert!(key_is("\u{212A}IND", "kind"));
        for k in [
            "layer", "layerss", "lay ers", "layérs", "layers\0", "ıayers",
        ] {
            assert!(!key_is(k, "layers"), "{k}");
        }
        assert!(key_is("V1COMPATIBILITY", "v1Compatibility"));
        assert!(!key_is("vlCompatibility", "v1Compatibility"));
    }

    #[test]
    fn duplicates_are_kept_and_make_a_field_ambiguous() {
        let doc = parse(r#"{"layers":[],"Layers":[1],"x":null}"#).expect("parses");
        let Json::Obj(o) = &doc else {
            panic!("object expected")
        };
        assert_eq!(o.len(), 3);
        assert!(doc.field("layers").is_err());
        assert_eq!(doc.field("x"), Ok(Some(&Json::Null)));
        assert_eq!(doc.str_field("x"), Ok(None));
        assert_eq!(doc.field("y"), Ok(None));
        assert!(doc.str_field("layers").is_err());
    }

    #[test]
    fn mentions_are_found_anywhere_in_any_algorithm() {
        let h = "ab".repeat(32);
        let h5 = "cd".repeat(64);
        let text = format!(
            r#"{{"a":[{{"deep":"x sha256:{h} y"}}],"sha256:{}":1,"b":"\u0073ha512:{h5}","c":"SHA256:{h}","d":"sha384:{}"}}"#,
            "EF".repeat(32),
            "0".repeat(95)
        );
        let m = mentions(&parse(&text).expect("parses"));
        assert_eq!(m.sha256, {
            let mut v = vec![
                Digest::from_hex(&h).expect("hex"),
                Digest::from_hex(&"ef".repeat(32)).expect("hex"),
            ];
            v.sort();
            v
        });
        assert_eq!(m.other, vec![format!("sha512:{h5}")]);
    }
}
