//! Who may touch which account: the prologue of every
//! `/v1/accounts/{account}/…` route, as an extractor, and the two checks it
//! is made of.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, ApiPath, note_target};
use crate::auth::Principal;

/// Only the admin token may `what` (403 otherwise).
pub(super) fn admin_only(principal: &Principal, what: &str) -> Result<(), ApiError> {
    if *principal != Principal::Admin {
        return Err(ApiError::Forbidden(format!(
            "only the admin token may {what}"
        )));
    }
    Ok(())
}

/// The `{account}` of a path (a 400 names it).
pub(super) fn check_account(account: &str) -> Result<(), ApiError> {
    note_target(Some(account), None);
    crate::record::validate_account(account)
        .map_err(|m| ApiError::BadRequest(format!("account {account:?} {m}")))
}

/// The `{account}` of a route whose only path segment it is, checked (a 400
/// names it), and who is asking. A handler then says what the caller needs:
/// [`AccountScope::readable`] or [`AccountScope::admin`].
#[derive(Debug, Clone)]
pub struct AccountScope {
    pub account: String,
    pub principal: Principal,
}

impl AccountScope {
    /// `account` (a path segment) checked, with the caller the request's
    /// authentication left in its extensions.
    pub fn of(account: String, parts: &Parts) -> Result<AccountScope, ApiError> {
        check_account(&account)?;
        // Authentication runs before every /v1 route and always leaves one.
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("the request was not authenticated".into()))?;
        Ok(AccountScope { account, principal })
    }

    /// The account, for the admin or the account's own key; any other
    /// caller gets a 404, as if the account did not exist.
    pub fn readable(&self) -> Result<&str, ApiError> {
        self.readable_as(&format!("no account {:?}", self.account))
    }

    /// As [`AccountScope::readable`], the 404 saying `missing`.
    pub fn readable_as(&self, missing: &str) -> Result<&str, ApiError> {
        if !self.principal.may_access(&self.account) {
            return Err(ApiError::NotFound(missing.to_owned()));
        }
        Ok(&self.account)
    }

    /// The account, for the admin token only, which alone may `what`.
    pub fn admin(&self, what: &str) -> Result<&str, ApiError> {
        admin_only(&self.principal, what)?;
        Ok(&self.account)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AccountScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(account) = ApiPath::<String>::from_request_parts(parts, state).await?;
        AccountScope::of(account, parts)
    }
}
