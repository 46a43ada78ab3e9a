//! The billing core: ledger usage → priced invoice lines (docs/billing.md, docs/invoices.md).
//!
//! Every figure tally shows (invoices, and later the cost report, the
//! dashboard and estimates) comes from here. Policy:
//! - usage is summed in the database ([`crate::store::UsageReads::usage_groups`]);
//!   this module never loads records one by one;
//! - money is `Decimal` throughout: unit prices are exact (rate per MTok ×
//!   modifiers ÷ 10⁶), each line keeps `amount_exact` and rounds `amount` to
//!   cents half away from zero, and the total is the sum of rounded lines;
//! - a model the price book does not know is *unpriced*: listed, never $0.

//!
//! Layout: [`period`] months; [`rating`] charges, rate picking and lines
//! (pure); [`containers`] container time; [`invoice`] assembly and
//! [`render`] its documents; [`drafts`] invoices from the ledger;
//! [`adjustments`] late usage of finalized periods; [`finalize`] freezing;
//! [`daily`] the dashboard's per-day split.

pub mod activity;
pub mod adjustments;
pub mod breakdown;
pub mod containers;
pub mod credits;
pub mod daily;
pub mod details;
pub mod documents;
pub mod drafts;
pub mod finalize;
pub mod invoice;
pub mod period;
pub mod rating;
pub mod render;
pub mod sums;

pub use crate::record::RateKey;
pub use breakdown::{BreakdownPart, breakdown, with_breakdown};
pub use documents::{DocumentKind, invoice_document};
pub use drafts::{
    Rendered, draft_as_of, draft_invoice, draft_invoices, invoice, joined_csv, period_csv,
    period_invoices,
};
pub use finalize::{FinalizeError, finalize};
pub use invoice::{Invoice, Subtotals, assemble};
pub use period::Period;
pub use rating::{
    Category, Charge, Line, LineBook, LineKey, Qualifier, TokenQuantities, Unpriced, cents,
};
pub use sums::{Cutoff, container_bill, container_values};

use crate::pricing::StoredBookError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The imported price book in force no longer parses.
    #[error(transparent)]
    Book(#[from] StoredBookError),
    /// A plan in force no longer parses.
    #[error(transparent)]
    Plan(#[from] crate::plans::StoredPlanError),
}
