//! The plans in force, read from the store and parsed.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Plan, PlanError};
use crate::store::{Plans, StoreError, StoredPlan};

/// A plan in force could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredPlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Plans are validated when set, so this means the stored text was
    /// changed behind tally's back, or a newer tally wrote it.
    #[error("the plan of account {account:?} (#{id}) no longer parses: {error}")]
    Unparsable {
        id: i64,
        account: String,
        error: PlanError,
    },
}

fn parsed(stored: StoredPlan) -> Result<(String, Arc<Plan>), StoredPlanError> {
    match Plan::parse(&stored.toml) {
        Ok(plan) => Ok((stored.account, Arc::new(plan))),
        Err(error) => Err(StoredPlanError::Unparsable {
            id: stored.id,
            account: stored.account,
            error,
        }),
    }
}

/// The plan in force of one account, or of every account that has one.
pub async fn in_force(
    store: &dyn Plans,
    account: Option<&str>,
) -> Result<BTreeMap<String, Arc<Plan>>, StoredPlanError> {
    let stored = match account {
        Some(a) => store.plan(a).await?.into_iter().collect(),
        None => store.plans().await?,
    };
    stored.into_iter().map(parsed).collect()
}

/// The account's plan as it was at `at` (UTC microseconds).
pub async fn plan_as_of(
    store: &dyn Plans,
    account: &str,
    at: i64,
) -> Result<Option<Arc<Plan>>, StoredPlanError> {
    match store.plan_as_of(account, at).await? {
        Some(stored) => Ok(Some(parsed(stored)?.1)),
        None => Ok(None),
    }
}

/// One account's plan in force.
pub async fn plan_of(
    store: &dyn Plans,
    account: &str,
) -> Result<Option<Arc<Plan>>, StoredPlanError> {
    Ok(in_force(store, Some(account)).await?.remove(account))
}

/// A stored plan as JSON (for `tally plan show --json` and the HTTP API):
/// the account, when it was set, the version in force today, its versions
/// (amounts as strings) and its file as set.
pub fn as_json(stored: &StoredPlan, plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "account": stored.account,
        "id": stored.id,
        "set_at": stored.set_at,
        "in_force": plan.version_at(chrono::Utc::now().date_naive()).map(|v| v.effective_from),
        "versions": plan.versions(),
        "toml": stored.toml,
    })
}
