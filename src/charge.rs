//! What a line charges for, and the invoice section it is listed in: the
//! vocabulary billing, plans, the documents, the exports and the views all
//! match on. A leaf: every layer may name a charge, and every `match` over
//! one is exhaustive, so a new charge is found by the compiler everywhere.

use serde::{Deserialize, Serialize};

/// What a line charges for; the order is the order of lines within a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charge {
    InputTokens,
    OutputTokens,
    #[serde(rename = "cache_write_5m_tokens")]
    CacheWrite5mTokens,
    #[serde(rename = "cache_write_1h_tokens")]
    CacheWrite1hTokens,
    CacheReadTokens,
    WebSearchRequests,
    ContainerHours,
    ContainerFreeHours,
    Adjustment,
    /// Tops a period's usage up to its plan's monthly minimum (docs/plans.md).
    MinimumCommitment,
    /// Prepaid credit drawn (negative).
    Credit,
    /// Tax on the total after credit (docs/invoices.md).
    Tax,
}

impl Charge {
    /// The charges a plan may price (adjustments are re-billed usage,
    /// priced as the lines they adjust).
    pub const PRICED_BY_PLANS: [Charge; 8] = [
        Charge::InputTokens,
        Charge::OutputTokens,
        Charge::CacheWrite5mTokens,
        Charge::CacheWrite1hTokens,
        Charge::CacheReadTokens,
        Charge::WebSearchRequests,
        Charge::ContainerHours,
        Charge::ContainerFreeHours,
    ];

    /// The charge an invoice line names `name`, among `among`.
    pub fn named(name: &str, among: &[Charge]) -> Option<Charge> {
        among.iter().copied().find(|c| c.as_str() == name)
    }

    /// Container time (billed, or the free allowance set against it).
    pub fn is_container_time(self) -> bool {
        self.category() == Category::CodeExecution
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Charge::InputTokens => "input_tokens",
            Charge::OutputTokens => "output_tokens",
            Charge::CacheWrite5mTokens => "cache_write_5m_tokens",
            Charge::CacheWrite1hTokens => "cache_write_1h_tokens",
            Charge::CacheReadTokens => "cache_read_tokens",
            Charge::WebSearchRequests => "web_search_requests",
            Charge::ContainerHours => "container_hours",
            Charge::ContainerFreeHours => "container_free_hours",
            Charge::Adjustment => "adjustment",
            Charge::MinimumCommitment => "minimum_commitment",
            Charge::Credit => "credit",
            Charge::Tax => "tax",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Charge::InputTokens => "input tokens",
            Charge::OutputTokens => "output tokens",
            Charge::CacheWrite5mTokens => "5-minute cache write tokens",
            Charge::CacheWrite1hTokens => "1-hour cache write tokens",
            Charge::CacheReadTokens => "cache read tokens",
            Charge::WebSearchRequests => "web search requests",
            Charge::ContainerHours => "code execution container hours",
            Charge::ContainerFreeHours => "code execution free container hours",
            Charge::Adjustment => "adjustment",
            Charge::MinimumCommitment => "minimum monthly commitment",
            Charge::Credit => "prepaid credit",
            Charge::Tax => "tax",
        }
    }

    pub fn category(self) -> Category {
        match self {
            Charge::WebSearchRequests => Category::WebSearch,
            Charge::ContainerHours | Charge::ContainerFreeHours => Category::CodeExecution,
            Charge::Adjustment => Category::Adjustment,
            Charge::MinimumCommitment => Category::Commitment,
            Charge::Credit => Category::Credit,
            Charge::Tax => Category::Tax,
            Charge::InputTokens
            | Charge::OutputTokens
            | Charge::CacheWrite5mTokens
            | Charge::CacheWrite1hTokens
            | Charge::CacheReadTokens => Category::Tokens,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Charge::WebSearchRequests => "request",
            Charge::ContainerHours | Charge::ContainerFreeHours => "hour",
            Charge::Adjustment | Charge::MinimumCommitment | Charge::Credit | Charge::Tax => "usd",
            Charge::InputTokens
            | Charge::OutputTokens
            | Charge::CacheWrite5mTokens
            | Charge::CacheWrite1hTokens
            | Charge::CacheReadTokens => "token",
        }
    }
}

/// Invoice sections, in the order lines are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Tokens,
    WebSearch,
    CodeExecution,
    Adjustment,
    Commitment,
    Credit,
    Tax,
}
