//! The role traits whose SQL is the same on both backends, implemented once
//! for every [`Pooled`] store. Rows map through `FromRow` structs; a row
//! type differs from the public one only where the database spells a value
//! differently (an amount kept as text, a time as microseconds, a flag as a
//! number).

mod budgets;
mod invoices;
mod price_books;
mod rejected;
mod usage;

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::AssertSqlSafe;

use super::pool::{PoolRef, Pooled, on_pool};
use super::sql;
use super::{
    Budget, BudgetAlert, Budgets, ContainerDayRow, ContainerDimDayRow, ContainerRecord, CreditDraw,
    FiguresVersion, FinalizedInvoice, FinalizedRef, FrozenDocuments, Invoices, LedgerCounts,
    PriceBooks, Rejected, RejectedLines, Result, StoreError, StoredPriceBook, StoredRecord,
    UsageGroup, UsageQuery, UsageReads,
};
use crate::record::Dimension;
use crate::record::{LineError, RateKey, RejectReason};
use crate::time::{Micros, now_micros, rfc3339};

/// An amount kept as exact decimal text.
pub(super) fn money(text: &str, what: &str) -> Result<Decimal> {
    text.parse()
        .map_err(|e| StoreError::Invalid(format!("{what} {text:?} in the database: {e}")))
}

/// The rows of `sql`, whose one parameter `$1` is `key`.
async fn rows_where<T>(pool: PoolRef<'_>, sql: &'static str, key: &str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    Ok(on_pool!(pool, |p| {
        sqlx::query_as(sql).bind(key).fetch_all(p).await?
    }))
}

/// Waits for the in-process writer lock where the backend has one.
async fn one_writer<S: Pooled>(store: &S) -> Option<tokio::sync::MutexGuard<'_, ()>> {
    match store.writer_lock() {
        Some(lock) => Some(lock.lock().await),
        None => None,
    }
}
