//! The usage counters as the API writes them, read leniently: a count is a
//! non-negative integer (or null), and the usage object becomes a [`Usage`].

use std::fmt;

use serde::{Deserialize, Deserializer, de};
use serde_json::Value;

use crate::record::{ExtraIteration, Usage};

/// A token or request count: a non-negative integer; `null` is read as 0 by
/// the `Option` around it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Count(i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                i64::try_from(v)
                    .map(Count)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("must be a non-negative integer, got {v}")))
                    .and_then(|u| self.visit_u64(u))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                // `39.0` is 39 (as JSON Schema's `integer` has it).
                match crate::whole::of_f64(v) {
                    Some(i) => self.visit_i64(i),
                    None => Err(E::custom(format!(
                        "must be a non-negative integer, got {v:?}"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                Err(E::custom(format!(
                    "must be a non-negative integer, got the string {v:?}"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Count, E> {
                Err(E::custom(format!(
                    "must be a non-negative integer, got {v}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn count(c: Option<Count>) -> i64 {
    c.map_or(0, |c| c.0)
}

/// A string field that billing reads but that must never reject a record if
/// a future API version changes its type: anything but a string reads as absent.
#[derive(Debug, Default)]
pub(super) struct Lenient(Option<String>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Lenient(v.as_str().map(str::to_owned)))
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CacheCreationIn {
    ephemeral_5m_input_tokens: Option<Count>,
    ephemeral_1h_input_tokens: Option<Count>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ServerToolUseIn {
    web_search_requests: Option<Count>,
    web_fetch_requests: Option<Count>,
    code_execution_requests: Option<Count>,
}

/// The counters of `usage`, and of each `usage.iterations[]` entry (same
/// shape, plus `type` and `model`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct CountersIn {
    input_tokens: Option<Count>,
    output_tokens: Option<Count>,
    cache_creation_input_tokens: Option<Count>,
    cache_read_input_tokens: Option<Count>,
    cache_creation: Option<CacheCreationIn>,
    server_tool_use: Option<ServerToolUseIn>,
    #[serde(rename = "type", default)]
    kind: Lenient,
    #[serde(default)]
    model: Lenient,
    #[serde(default)]
    service_tier: Lenient,
    #[serde(default)]
    inference_geo: Lenient,
    #[serde(default)]
    speed: Lenient,
    iterations: Option<Vec<CountersIn>>,
}

pub(super) type UsageParts = (
    Usage,
    Vec<ExtraIteration>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl CountersIn {
    pub(super) fn usage(&self) -> Usage {
        let cache_creation_input_tokens = count(self.cache_creation_input_tokens);
        let (w5, w1) = match &self.cache_creation {
            Some(b) => (
                count(b.ephemeral_5m_input_tokens),
                count(b.ephemeral_1h_input_tokens),
            ),
            // No breakdown: every cache write is a 5-minute write (docs/billing.md).
            None => (cache_creation_input_tokens, 0),
        };
        let stu = self.server_tool_use.as_ref();
        Usage {
            input_tokens: count(self.input_tokens),
            output_tokens: count(self.output_tokens),
            cache_creation_input_tokens,
            cache_write_5m_tokens: w5,
            cache_write_1h_tokens: w1,
            cache_read_tokens: count(self.cache_read_input_tokens),
            web_search_requests: count(stu.and_then(|s| s.web_search_requests)),
            web_fetch_requests: count(stu.and_then(|s| s.web_fetch_requests)),
            code_execution_requests: count(stu.and_then(|s| s.code_execution_requests)),
        }
    }

    pub(super) fn into_parts(self) -> UsageParts {
        let usage = self.usage();
        // `message` iterations are already in the top-level counters; every
        // other type (advisor, compaction, fallback, unknown) is billed on top.
        let iterations = self
            .iterations
            .unwrap_or_default()
            .into_iter()
            .filter(|it| it.kind.0.as_deref() != Some("message"))
            .map(|it| ExtraIteration {
                usage: it.usage(),
                kind: it.kind.0.unwrap_or_else(|| "unknown".to_owned()),
                model: it.model.0,
            })
            .collect();
        (
            usage,
            iterations,
            self.service_tier.0,
            self.inference_geo.0,
            self.speed.0,
        )
    }
}
