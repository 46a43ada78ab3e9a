//! The workload document (docs/estimates.md): TOML or JSON, read strictly (an unknown
//! field is an error: a typo must not silently cost nothing), numbers as
//! exact decimals, then checked field by field.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

/// A whole workload file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    #[serde(default = "thirty", deserialize_with = "crate::whole::integer")]
    pub days: i64,
    #[serde(default)]
    pub workload: Vec<Workload>,
}

fn thirty() -> i64 {
    30
}

/// One kind of traffic; every count is an average per request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub model: String,
    #[serde(deserialize_with = "decimal")]
    pub requests_per_day: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub input_tokens: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub output_tokens: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub cache_write_5m_tokens: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub cache_write_1h_tokens: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub cache_read_tokens: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub web_searches: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub batch_share: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub code_execution_share: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub container_minutes: Decimal,
    #[serde(default, deserialize_with = "decimal")]
    pub files_preloaded_share: Decimal,
}

/// Why a workload was refused: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// The document does not parse (the message carries line and column).
    #[error("{0}")]
    Syntax(String),
    /// A field's value is not allowed.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl WorkloadError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WorkloadError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            WorkloadError::Invalid { field, .. } => Some(field),
            WorkloadError::Syntax(_) => None,
        }
    }
}

/// Longest projection accepted (ten years), so a typo cannot ask for a
/// billion simulated days.
pub const MAX_DAYS: i64 = 3660;

/// Upper bound for any per-request average or daily count: far above real
/// traffic, low enough that products of them never overflow a Decimal.
const MAX_COUNT: i64 = 1_000_000_000;

impl WorkloadFile {
    /// Parse TOML, or JSON when the text starts with `{`.
    pub fn parse(text: &str) -> Result<WorkloadFile, WorkloadError> {
        let file: WorkloadFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| WorkloadError::Syntax(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| WorkloadError::Syntax(e.to_string().trim().into()))?
        };
        file.validate()?;
        Ok(file)
    }

    /// Every rule a document must meet besides its syntax; models are
    /// checked against the price book by the estimate.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(WorkloadError::invalid(
                "days",
                format!("{} is not a number of days from 1 to {MAX_DAYS}", self.days),
            ));
        }
        if self.workload.is_empty() {
            return Err(WorkloadError::invalid(
                "workload",
                "the document has no [[workload]] entry",
            ));
        }
        for (i, w) in self.workload.iter().enumerate() {
            w.validate(&format!("workload[{i}]"))?;
        }
        Ok(())
    }
}

impl Workload {
    fn validate(&self, at: &str) -> Result<(), WorkloadError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.trim().is_empty() {
            return Err(WorkloadError::invalid(field("name"), "must not be empty"));
        }
        if self.model.trim().is_empty() {
            return Err(WorkloadError::invalid(field("model"), "must not be empty"));
        }
        let max = Decimal::from(MAX_COUNT);
        for (name, value) in [
            ("requests_per_day", self.requests_per_day),
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cache_write_5m_tokens", self.cache_write_5m_tokens),
            ("cache_write_1h_tokens", self.cache_write_1h_tokens),
            ("cache_read_tokens", self.cache_read_tokens),
            ("web_searches", self.web_searches),
            ("container_minutes", self.container_minutes),
        ] {
            if value.is_sign_negative() && !value.is_zero() {
                return Err(WorkloadError::invalid(
                    field(name),
                    format!("{value} is negative; counts are 0 or more"),
                ));
            }
            if value > max {
                return Err(WorkloadError::invalid(
                    field(name),
                    format!("{value} is larger than {MAX_COUNT}"),
                ));
            }
        }
        for (name, value) in [
            ("batch_share", self.batch_share),
            ("code_execution_share", self.code_execution_share),
            ("files_preloaded_share", self.files_preloaded_share),
        ] {
            if value < Decimal::ZERO || value > Decimal::ONE {
                return Err(WorkloadError::invalid(
                    field(name),
                    format!("{value} is outside [0, 1]; a share is a fraction of the requests"),
                ));
            }
        }
        if self.code_execution_share + self.files_preloaded_share > Decimal::ONE {
            return Err(WorkloadError::invalid(
                field("files_preloaded_share"),
                format!(
                    "code_execution_share + files_preloaded_share = {} exceeds 1 \
                     (files-only requests are those that run no code)",
                    self.code_execution_share + self.files_preloaded_share
                ),
            ));
        }
        Ok(())
    }
}

/// A number as an exact decimal: an integer, a float read back from its
/// shortest decimal form (`0.1` is 0.1, not the nearest binary fraction),
/// or a string such as `"0.1"`.
fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
            if !v.is_finite() {
                return Err(E::custom(format!("{v} is not a finite number")));
            }
            Decimal::from_str(&v.to_string()).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
            Decimal::from_str(v.trim()).map_err(|_| E::custom(format!("{v:?} is not a number")))
        }
    }
    d.deserialize_any(Visitor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The example workload the README shows.
    const DOCUMENTED_EXAMPLE: &str = include_str!("../../fixtures/workload.toml");

    #[test]
    fn the_spec_example_parses_exactly() {
        let f = WorkloadFile::parse(DOCUMENTED_EXAMPLE).unwrap();
        let w = &f.workload[0];
        assert_eq!(w.web_searches.to_string(), "0.2");
        assert_eq!(w.files_preloaded_share.to_string(), "0.05");
        assert_eq!(w.cache_write_1h_tokens, Decimal::ZERO);
    }

    #[test]
    fn json_and_defaults() {
        let f = WorkloadFile::parse(
            r#"{"workload": [{"name": "a", "model": "m", "requests_per_day": 10}]}"#,
        )
        .unwrap();
        assert_eq!(f.days, 30);
        assert_eq!(f.workload[0].requests_per_day, Decimal::from(10));
    }

    fn error(text: &str) -> WorkloadError {
        WorkloadFile::parse(text).unwrap_err()
    }

    #[test]
    fn each_mistake_names_its_field() {
        let typo = DOCUMENTED_EXAMPLE.replace("input_tokens", "input_tokns");
        let e = error(&typo).to_string();
        assert!(e.contains("input_tokns") && e.contains("line 6"), "{e}");
        let share = DOCUMENTED_EXAMPLE.replace("batch_share = 0.0", "batch_share = 1.5");
        assert_eq!(error(&share).field(), Some("workload[0].batch_share"));
        let negative = DOCUMENTED_EXAMPLE.replace("output_tokens = 300", "output_tokens = -3");
        assert_eq!(error(&negative).field(), Some("workload[0].output_tokens"));
        let days = DOCUMENTED_EXAMPLE.replace("days = 30", "days = 0");
        assert_eq!(error(&days).field(), Some("days"));
        let both = DOCUMENTED_EXAMPLE.replace(
            "files_preloaded_share = 0.05",
            "files_preloaded_share = 0.95",
        );
        assert_eq!(
            error(&both).field(),
            Some("workload[0].files_preloaded_share")
        );
        let missing = DOCUMENTED_EXAMPLE.replace("requests_per_day = 50000\n", "");
        assert!(error(&missing).to_string().contains("requests_per_day"));
        let json = r#"{"workload": [{"name": "a", "model": "m", "requests_per_day": 1, "batch_shar": 0}]}"#;
        assert!(error(json).to_string().contains("batch_shar"));
        let word =
            DOCUMENTED_EXAMPLE.replace("requests_per_day = 50000", "requests_per_day = \"many\"");
        assert!(error(&word).to_string().contains("not a number"));
    }
}
