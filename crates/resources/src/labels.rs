//! Label selectors (`app_labels`, `db_labels`, ...) whose values may be a scalar or a list.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize, Serializer};

/// A label selector: each key maps to the values it accepts.
///
/// In YAML a value may be written as a scalar (`'*': '*'`) or a list (`env: [a, b]`).
pub type Labels = BTreeMap<String, Vec<String>>;

/// One selector value: a scalar or a list of scalars.
pub(crate) struct StringOrList(pub Vec<String>);

struct StringOrListVisitor;

impl<'de> Visitor<'de> for StringOrListVisitor {
    type Value = StringOrList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrList, E> {
        Ok(StringOrList(vec![v.to_string()]))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StringOrList, E> {
        Ok(StringOrList(vec![v.to_string()]))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StringOrList, E> {
        Ok(StringOrList(vec![v.to_string()]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StringOrList, E> {
        Ok(StringOrList(vec![v.to_string()]))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StringOrList, E> {
        Ok(StringOrList(vec![v.to_string()]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<StringOrList, E> {
        Ok(StringOrList(Vec::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<StringOrList, E> {
        Ok(StringOrList(Vec::new()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
        let mut out = Vec::new();
        while let Some(Scalar(s)) = seq.next_element::<Scalar>()? {
            out.push(s);
        }
        Ok(StringOrList(out))
    }
}

impl<'de> serde::Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrListVisitor)
    }
}

/// A single scalar read as a string (numbers and booleans are kept as text).
struct Scalar(String);

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct LabelsVisitor;

impl<'de> Visitor<'de> for LabelsVisitor {
    type Value = Option<Labels>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of label names to a string or a list of strings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LabelsVisitor)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Labels::new();
        while let Some((Scalar(k), StringOrList(v))) = map.next_entry::<Scalar, StringOrList>()? {
            // A repeated key would silently replace the first one's values (in a `deny`
            // selector, dropping part of a denial).
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{k}`: write its values once, as a list"
                )));
            }
            out.insert(k, v);
        }
        Ok(Some(out))
    }
}

/// Serde helpers for `Option<Labels>` fields (`#[serde(default, with = "labels_serde")]`).
///
/// A missing or `null` field reads as `None`; an explicit `{}` as `Some(empty)`.
pub mod labels_serde {
    use super::*;

    /// Reads an optional selector accepting scalar or list values.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Labels>, D::Error> {
        d.deserialize_option(LabelsVisitor)
    }

    /// Writes an optional selector (values always as lists).
    pub fn serialize<S: Serializer>(v: &Option<Labels>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// Serde helpers for a required `Labels` field (missing or `null` reads as empty).
    pub mod required {
        use super::*;

        /// Reads a selector accepting scalar or list values.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
            d.deserialize_option(LabelsVisitor)
                .map(Option::unwrap_or_default)
        }

        /// Writes a selector (values always as lists).
        pub fn serialize<S: Serializer>(v: &Labels, s: S) -> Result<S::Ok, S::Error> {
            v.serialize(s)
        }
    }
}

/// Serde helpers for string-list fields that also accept a single scalar or `null`
/// (`traits: {logins: root}`).
pub(crate) mod string_list {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(StringOrListVisitor).map(|v| v.0)
    }
}

/// Serde helpers for trait maps (`name: [values]`, scalar or `null` values accepted).
pub(crate) mod traits_serde {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
        d.deserialize_option(LabelsVisitor)
            .map(Option::unwrap_or_default)
    }
}

/// Reads a map whose keys must be unique (`#[serde(deserialize_with = "resources::unique_keys")]`):
/// a repeated key is refused instead of silently replacing the first one's value.
pub fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: serde::Deserialize<'de>,
{
    struct UniqueVisitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: serde::Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((Scalar(k), v)) = map.next_entry::<Scalar, V>()? {
                if out.contains_key(&k) {
                    return Err(de::Error::custom(format!("duplicate key `{k}`")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }

    d.deserialize_map(UniqueVisitor(std::marker::PhantomData))
}
