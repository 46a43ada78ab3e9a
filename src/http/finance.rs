//! Finance endpoints: the dashboard (`/`), the cost report, budgets and
//! alerts, the FOCUS export and the all-accounts invoice download.
//! The admin sees every account; an account key sees only its own rows
//! (another account's budget answers 404, as its invoices do).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::Blame;
use super::body::{self, BodyOf};
use super::invoices::QueryFormat;
use super::{AccountScope, ApiBody, ApiError, ApiQuery, AppState};
use crate::auth::Principal;
use crate::billing::{self, Period};
use crate::finance::{Snapshot, accounting, budget, cost_report, focus};
use crate::record::Dimension;

#[derive(Debug, Deserialize)]
pub struct PeriodQuery {
    period: Option<String>,
}

/// The `period` query parameter (a 400 names it).
fn period_param(p: &str) -> Result<Period, ApiError> {
    super::note_target(None, Some(p));
    Period::parse(p).field("period")
}

/// An optional `period`: when given it must be one (an empty value is
/// refused, not read as "the current month").
fn period_or_current(p: Option<&str>) -> Result<Period, ApiError> {
    match p {
        Some(p) => period_param(p),
        None => Ok(Period::of_day(Utc::now().date_naive())),
    }
}

fn required_period(p: Option<&str>) -> Result<Period, ApiError> {
    match p {
        Some(p) => period_param(p),
        None => Err(ApiError::BadRequest("period is required (YYYY-MM)".into())),
    }
}

async fn snapshot(state: &AppState, period: Period) -> Result<Arc<Snapshot>, ApiError> {
    Ok(state
        .finance
        .costs(state.ledger.store().as_ref(), period)
        .await?)
}

fn only(principal: &Principal) -> Option<&str> {
    match principal {
        Principal::Admin => None,
        Principal::Account(a) => Some(a.as_str()),
    }
}

#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    period: Option<String>,
    /// Only the records of this workspace.
    workspace: Option<String>,
    /// Only the records with this tag, `KEY:VALUE`.
    tag: Option<String>,
    /// The "cost by tag" panel for this key.
    tag_key: Option<String>,
}

/// The dashboard's filter and panel choices, checked.
struct DashboardChoice {
    workspace: Option<String>,
    tag: Option<(String, String)>,
    tag_key: Option<String>,
}

impl DashboardChoice {
    fn of(q: &DashboardQuery) -> Result<DashboardChoice, ApiError> {
        // The dashboard's own filter form sends the fields left blank as
        // empty values: those mean "no filter" (the document says so).
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let tag = match given(&q.tag) {
            Some(t) => {
                let (key, value) = t.split_once(':').ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "tag={t:?}: expected KEY:VALUE, e.g. project:search"
                    ))
                })?;
                crate::record::validate_tag_key(key).field("tag")?;
                Some((key.to_owned(), value.to_owned()))
            }
            None => None,
        };
        let tag_key = given(&q.tag_key);
        if let Some(k) = &tag_key {
            crate::record::validate_tag_key(k).field("tag_key")?;
        }
        Ok(DashboardChoice {
            workspace: given(&q.workspace),
            tag,
            tag_key,
        })
    }

    /// The dimensions to split by: the filters', then the panel's.
    fn dimensions(&self) -> Vec<Dimension> {
        let mut dims = Vec::new();
        if self.workspace.is_some() {
            dims.push(Dimension::Workspace);
        }
        if let Some((key, _)) = &self.tag {
            dims.push(Dimension::Tag(key.clone()));
        }
        if let Some(key) = &self.tag_key {
            dims.push(Dimension::Tag(key.clone()));
        }
        dims
    }

    /// Whether a part with these values (in [`Self::dimensions`] order) passes the filters.
    fn keeps(&self, values: &[Option<String>]) -> bool {
        let mut values = values.iter();
        if let Some(w) = &self.workspace
            && values.next().and_then(Option::as_deref) != Some(w.as_str())
        {
            return false;
        }
        if let Some((_, v)) = &self.tag
            && values.next().and_then(Option::as_deref) != Some(v.as_str())
        {
            return false;
        }
        true
    }
}

/// `GET /` and `GET /?period=YYYY-MM` (`&workspace=W`, `&tag=KEY:VALUE`
/// filter every panel; `&tag_key=KEY` adds the cost-by-tag panel).
pub async fn dashboard(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<DashboardQuery>,
) -> Result<Response, ApiError> {
    let store = state.ledger.store().as_ref();
    let only = only(&principal);
    // The months the caller's records are in (the picker lists them); with
    // no period asked for, the current month, or the latest with records
    // when the current one has none.
    let mut periods: Vec<Period> = billing::activity::account_periods(store)
        .await?
        .into_iter()
        .filter(|ap| only.is_none_or(|o| o == ap.account))
        .map(|ap| ap.period)
        .collect();
    periods.sort();
    periods.dedup();
    let period = match q.period.as_deref() {
        Some(p) => period_param(p)?,
        None => {
            let current = Period::of_day(Utc::now().date_naive());
            match periods.last() {
                Some(latest) if !periods.contains(&current) => *latest,
                _ => current,
            }
        }
    };
    let choice = DashboardChoice::of(&q)?;
    let snap = snapshot(&state, period).await?;
    let dims = choice.dimensions();
    let split = if dims.is_empty() {
        None
    } else {
        let book = crate::pricing::current_book(store).await?;
        let costs = billing::daily::period_costs(store, &book, period, only, &dims).await?;
        Some(costs.filtered(|values| choice.keeps(values)))
    };
    let costs = split.as_ref().unwrap_or(&snap.costs);
    let mut budgets = budget::statuses(store, &snap.costs, Utc::now()).await?;
    budgets.retain(|b| only.is_none_or(|o| o == b.account));
    let mut filters = Vec::new();
    if let Some(w) = &choice.workspace {
        filters.push(format!("workspace {w}"));
    }
    if let Some((k, v)) = &choice.tag {
        filters.push(format!("tag {k} = {v}"));
    }
    let by_tag = choice.tag_key.as_ref().map(|key| {
        let mut totals: std::collections::BTreeMap<Option<String>, rust_decimal::Decimal> =
            std::collections::BTreeMap::new();
        for day in costs
            .days()
            .filter(|d| only.is_none_or(|o| o == d.account))
            .filter(|d| d.key.charge != billing::Charge::Adjustment)
        {
            *totals
                .entry(day.values.last().cloned().flatten())
                .or_default() += day.amount;
        }
        (key.clone(), totals.into_iter().collect())
    });
    let view = crate::dashboard::View {
        costs,
        accounts: costs
            .accounts
            .iter()
            .filter(|a| only.is_none_or(|o| o == a.invoice.account))
            .collect(),
        budgets,
        organization: only.is_none() && filters.is_empty(),
        computed_at: snap.computed_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        filters: crate::dashboard::Filters {
            workspace: choice.workspace.clone(),
            tag: choice.tag.as_ref().map(|(k, v)| format!("{k}:{v}")),
            tag_key: choice.tag_key.clone(),
            described: filters,
        },
        by_tag,
        margins: only.is_none() && costs.accounts.iter().any(|a| a.plan.is_some()),
        periods,
    };
    Ok(Html(crate::dashboard::render(&view)).into_response())
}

/// A period's costs: the cached figures, or computed split by dimensions.
enum CostsOf {
    Cached(Arc<Snapshot>),
    Split(billing::daily::PeriodCosts),
}

impl CostsOf {
    fn costs(&self) -> &billing::daily::PeriodCosts {
        match self {
            CostsOf::Cached(s) => &s.costs,
            CostsOf::Split(c) => c,
        }
    }
}

/// `GET /v1/cost_report`.
pub async fn cost_report(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    // The raw query (repeated keys allowed); a 400 says it is the query string.
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).field("query string")?;
    // The parser's message names the parameter at fault: the client's to fix.
    let query = cost_report::CostReportQuery::parse(&pairs, Utc::now().date_naive()).invalid()?;
    if query.view != cost_report::CostView::Price && principal != Principal::Admin {
        // An account sees what it pays, never what that cost.
        return Err(ApiError::Forbidden(
            "only the admin token may see costs and margins (view=cost|margin)".into(),
        ));
    }
    let (days, _) = query.page_days();
    let mut periods: Vec<Period> = days.iter().map(|d| Period::of_day(*d)).collect();
    periods.dedup();
    let only = only(&principal);
    let dims = query.dimensions();
    let mut costs = Vec::new();
    for p in periods {
        costs.push(if dims.is_empty() {
            CostsOf::Cached(snapshot(&state, p).await?)
        } else {
            // Split by attribution: computed for this request (not cached).
            let store = state.ledger.store().as_ref();
            let book = crate::pricing::current_book(store).await?;
            CostsOf::Split(billing::daily::period_costs(store, &book, p, only, &dims).await?)
        });
    }
    let report = cost_report::build(
        &query,
        costs
            .iter()
            .flat_map(|c| c.costs().days())
            .filter(|c| only.is_none_or(|o| o == c.account)),
        costs
            .iter()
            .flat_map(|c| c.costs().unbilled_refusals())
            .filter(|(account, _, _)| only.is_none_or(|o| o == *account)),
    );
    // Named for the dashboard's download link (a JSON body, shown inline).
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "inline; filename=\"tally-cost-report.json\"",
        )],
        Json(report),
    )
        .into_response())
}

/// `GET /v1/accounts/{account}/budget[?period=YYYY-MM]`.
pub async fn get_budget(
    State(state): State<AppState>,
    scope: AccountScope,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Response, ApiError> {
    let account = scope.readable_as("no such budget")?;
    let period = period_or_current(q.period.as_deref())?;
    let snap = snapshot(&state, period).await?;
    let statuses = budget::statuses(state.ledger.store().as_ref(), &snap.costs, Utc::now()).await?;
    let status = statuses
        .into_iter()
        .find(|s| s.account == account)
        .unwrap_or_else(|| budget::BudgetStatus {
            account: account.to_owned(),
            period: period.to_string(),
            monthly_budget_usd: None,
            month_to_date_usd: Default::default(),
            forecast_usd: Default::default(),
            share_used: None,
            alerts: Vec::new(),
        });
    Ok(Json(status).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    monthly_usd: String,
}

/// `PUT /v1/accounts/{account}/budget` with `{"monthly_usd": "500.00"}` (admin).
pub async fn put_budget(
    State(state): State<AppState>,
    scope: AccountScope,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let account = scope.admin("set budgets")?;
    // The amount's parser says what is wrong with it: the client's to fix.
    let amount = body::parse(BodyOf::Budget, &body, |b: BudgetBody| {
        budget::parse_amount(&b.monthly_usd).invalid()
    })?;
    let store = state.ledger.store().as_ref();
    store.set_budget(account, amount).await?;
    get_budget(State(state), scope, ApiQuery(PeriodQuery { period: None })).await
}

/// `GET /v1/alerts[?period=YYYY-MM]`: budget alerts, then low-balance
/// alerts (those raised in the period, when one is given); an account key
/// sees its own.
pub async fn alerts(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Response, ApiError> {
    let period = match q.period.as_deref() {
        Some(p) => Some(required_period(Some(p))?.to_string()),
        None => None,
    };
    let only = only(&principal);
    let store = state.ledger.store();
    let mut alerts: Vec<serde_json::Value> = Vec::new();
    for a in store
        .alerts(period.as_deref(), false)
        .await?
        .iter()
        .filter(|a| only.is_none_or(|o| o == a.account))
    {
        alerts.push(serde_json::to_value(budget::AlertView::from(a)).internal()?);
    }
    for a in store.credit_alerts(false).await?.iter().filter(|a| {
        only.is_none_or(|o| o == a.account)
            && period
                .as_deref()
                .is_none_or(|p| Period::of_day(crate::time::date_of(a.crossed_at)).to_string() == p)
    }) {
        alerts.push(
            serde_json::to_value(crate::finance::credits::CreditAlertView::from(a)).internal()?,
        );
    }
    Ok(Json(serde_json::json!({ "data": alerts })).into_response())
}

fn csv_download(body: Vec<u8>, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/exports/focus?period=YYYY-MM`.
pub async fn focus_export(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Response, ApiError> {
    let period = required_period(q.period.as_deref())?;
    let store = state.ledger.store().as_ref();
    let only = only(&principal);
    let costs = if store.any_tags().await? {
        let book = crate::pricing::current_book(store).await?;
        CostsOf::Split(focus::costs_for_export(store, &book, period, only).await?)
    } else {
        CostsOf::Cached(snapshot(&state, period).await?)
    };
    let mut out = Vec::new();
    // Writing CSV into memory fails only on a bug: 500.
    focus::write(costs.costs(), only, &mut out).internal()?;
    Ok(csv_download(out, &format!("tally-focus-{period}.csv")))
}

#[derive(Debug, Deserialize)]
pub struct AccountingQuery {
    period: Option<String>,
    date_format: Option<String>,
    account_code: Option<String>,
    tax_type: Option<String>,
}

/// `GET /v1/exports/quickbooks|xero?period=YYYY-MM[&date_format=mdy|dmy|iso]
/// [&account_code=…&tax_type=…]`: the period's finalized invoices (an
/// account key's own only) in that product's invoice import layout.
async fn accounting_export(
    state: &AppState,
    principal: &Principal,
    q: AccountingQuery,
    product: accounting::Product,
) -> Result<Response, ApiError> {
    let period = required_period(q.period.as_deref())?;
    let mut options = accounting::ExportOptions::defaults(product);
    if let Some(f) = q.date_format.as_deref() {
        options.dates = match f {
            "mdy" => accounting::DateFormat::Mdy,
            "dmy" => accounting::DateFormat::Dmy,
            "iso" => accounting::DateFormat::Iso,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "date_format={other:?}: expected mdy, dmy or iso"
                )));
            }
        };
    }
    for (name, given, target) in [
        ("account_code", q.account_code, &mut options.account_code),
        ("tax_type", q.tax_type, &mut options.tax_type),
    ] {
        if let Some(v) = given {
            if v.trim().is_empty() || v.chars().count() > 64 || v.chars().any(char::is_control) {
                return Err(ApiError::BadRequest(format!(
                    "{name}: 1 to 64 characters, no control characters"
                )));
            }
            *target = v;
        }
    }
    let store = state.ledger.store().as_ref();
    let (csv, _) = accounting::export(store, product, period, only(principal), &options)
        .await
        .map_err(|e| match e {
            accounting::ExportError::Store(e) => ApiError::from(e),
            e => ApiError::internal(e),
        })?;
    let name = match product {
        accounting::Product::QuickBooks => "quickbooks",
        accounting::Product::Xero => "xero",
    };
    Ok(csv_download(
        csv.into_bytes(),
        &format!("tally-{name}-invoices-{period}.csv"),
    ))
}

/// `GET /v1/exports/quickbooks?period=YYYY-MM`.
pub async fn quickbooks_export(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<AccountingQuery>,
) -> Result<Response, ApiError> {
    accounting_export(&state, &principal, q, accounting::Product::QuickBooks).await
}

/// `GET /v1/exports/xero?period=YYYY-MM`.
pub async fn xero_export(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<AccountingQuery>,
) -> Result<Response, ApiError> {
    accounting_export(&state, &principal, q, accounting::Product::Xero).await
}

/// `GET /v1/invoices?period=YYYY-MM[&format=csv|json]`: every invoice of a
/// period the caller may see (finalized ones as frozen).
pub async fn period_invoices(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
    QueryFormat { csv }: QueryFormat,
) -> Result<Response, ApiError> {
    let period = required_period(q.period.as_deref())?;
    let store = state.ledger.store().as_ref();
    let (_, book) = state.finance.book(store).await?;
    let rendered = match &principal {
        Principal::Admin => billing::period_invoices(store, &book, period).await?,
        Principal::Account(a) => vec![billing::invoice(store, &book, a, period).await?],
    };
    if csv {
        return Ok(csv_download(
            billing::joined_csv(&rendered).into_bytes(),
            &format!("tally-invoices-{period}.csv"),
        ));
    }
    // Our own rendering: a document that does not parse back is a bug (500).
    let docs = rendered
        .iter()
        .map(|r| serde_json::from_str(&r.json))
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .internal()?;
    Ok(Json(serde_json::json!({ "period": period.to_string(), "invoices": docs })).into_response())
}
