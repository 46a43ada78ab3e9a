//! Whole numbers in JSON. JSON does not tell `39` from `39.0`, and JSON
//! Schema's `integer` (what the OpenAPI document promises) admits both, so
//! where tally reads an integer from JSON it takes either, as long as the
//! value is exact: a number written with a fraction is taken when the
//! fraction is zero and the value is under 2^53 (beyond that a float no
//! longer tells which integer was written, and is refused).

use std::fmt;

use serde::{Deserialize, Deserializer, de};

/// 2^53: below it every integer is exactly a float.
pub const EXACT_BELOW: f64 = 9_007_199_254_740_992.0;

/// The integer a JSON float stands for, if it is one (exactly).
pub fn of_f64(v: f64) -> Option<i64> {
    // NaN and the infinities have a NaN fraction.
    (v.fract() == 0.0 && v.abs() < EXACT_BELOW).then_some(v as i64)
}

/// An integer read from JSON (or TOML): `39` or `39.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                i64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                of_f64(v)
                    .map(Whole)
                    .ok_or_else(|| E::custom(format!("must be an integer, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

fn narrow<T: TryFrom<i64>, E: de::Error>(v: i64) -> Result<T, E> {
    T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
}

/// `#[serde(deserialize_with = "crate::whole::integer")]`.
pub fn integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    narrow(Whole::deserialize(d)?.0)
}

/// The same for an optional field (`null` is absent).
pub fn optional<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Whole>::deserialize(d)?
        .map(|w| narrow(w.0))
        .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(default, deserialize_with = "optional")]
        n: Option<u32>,
    }

    fn n(json: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Doc>(json)
            .map(|d| d.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_with_or_without_a_fraction() {
        assert_eq!(n(r#"{"n": 39}"#), Ok(Some(39)));
        assert_eq!(n(r#"{"n": 39.0}"#), Ok(Some(39)));
        assert_eq!(n(r#"{"n": 3.9e1}"#), Ok(Some(39)));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert_eq!(n("{}"), Ok(None));
        assert!(
            n(r#"{"n": 39.5}"#)
                .unwrap_err()
                .contains("must be an integer")
        );
        assert!(n(r#"{"n": -1}"#).unwrap_err().contains("out of range"));
        assert!(n(r#"{"n": "39"}"#).is_err());
        assert_eq!(of_f64(9_007_199_254_740_991.0), Some(9_007_199_254_740_991));
        assert_eq!(of_f64(EXACT_BELOW), None);
        assert_eq!(of_f64(f64::NAN), None);
        assert_eq!(of_f64(f64::INFINITY), None);
    }
}
