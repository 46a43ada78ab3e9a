//! Billing details, written once for both backends: each change adds a row
//! (the details as JSON, checked by [`crate::billing::details`] before they
//! get here); the newest per party is in force. The seller is party `''`.

use async_trait::async_trait;

use super::pool::{Pooled, on_pool};
use super::{BillingDetailsStore, Result, StoredDetails};
use crate::time::now_micros;

#[async_trait]
impl<S: Pooled> BillingDetailsStore for S {
    async fn set_details(&self, party: &str, json: &str) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query("insert into billing_details (party, details, set_at) values ($1, $2, $3)")
                .bind(party)
                .bind(json)
                .bind(now_micros())
                .execute(p)
                .await?;
        });
        Ok(())
    }

    async fn details_as_of(&self, party: &str, at: i64) -> Result<Option<StoredDetails>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select party, details, set_at from billing_details \
                 where party = $1 and set_at <= $2 order by id desc limit 1",
            )
            .bind(party)
            .bind(at)
            .fetch_optional(p)
            .await?
        }))
    }
}
