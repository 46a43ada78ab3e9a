//! Prepaid credit on invoices (docs/plans.md).
//!
//! - A grant is **available to a period** when it was granted before the
//!   period ends, is not voided, and expires (if it does) on or after the
//!   period's first day: credit bought for a month pays that month's
//!   invoice, and the last month it may pay is the one its expiry falls in.
//! - A period's invoice draws on the available grants, the one expiring
//!   first (grants without expiry last), then the oldest, up to its total
//!   after the minimum commitment: one negative `credit` line per grant.
//! - A draft draws on what the grants have left after the draws of every
//!   finalized invoice: what it would draw if it were finalized now.
//!   Finalizing writes its draws in the invoice's own transaction, checked
//!   against the grants then (a grant drawn or voided meanwhile sends the
//!   finalization back to be computed again), so no grant is ever drawn
//!   beyond its amount. A finalized invoice's draws never change.
//! - What an account has left, its balance, is what its grants have left
//!   after the finalized draws and after what its open invoices would draw
//!   in period order, less what expired undrawn ([`CreditBook::status`]).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::invoice::Invoice;
use super::period::Period;
use super::rating::{Category, Charge, Line, cents};
use crate::store::{CreditDraw, CreditGrant, Credits, StoreError};
use crate::time::{date_of, rfc3339};

/// Grants and finalized draws of one account or of all.
#[derive(Debug, Clone, Default)]
pub struct CreditBook {
    grants: Vec<CreditGrant>,
    draws: Vec<CreditDraw>,
}

/// What each grant has left, by id.
type Left = BTreeMap<i64, Decimal>;

impl CreditBook {
    pub async fn load(store: &dyn Credits, account: Option<&str>) -> Result<Self, StoreError> {
        Ok(CreditBook {
            grants: store.credit_grants(account).await?,
            draws: store.credit_draws(account).await?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    fn grants_of<'a>(&'a self, account: &'a str) -> impl Iterator<Item = &'a CreditGrant> + 'a {
        self.grants.iter().filter(move |g| g.account == account)
    }

    /// What the account's grants have left after every finalized draw.
    fn left_after_finalized(&self, account: &str) -> Left {
        let mut left: Left = self.grants_of(account).map(|g| (g.id, g.usd)).collect();
        for d in self.draws.iter().filter(|d| d.account == account) {
            if let Some(l) = left.get_mut(&d.grant_id) {
                *l -= d.usd;
            }
        }
        left
    }

    /// The account's grants available to `period`, in the order drawn.
    fn available<'a>(&'a self, account: &'a str, period: Period) -> Vec<&'a CreditGrant> {
        let (_, end) = period.bounds();
        let mut grants: Vec<&CreditGrant> = self
            .grants_of(account)
            .filter(|g| g.voided_at.is_none() && g.granted_at < end)
            .filter(|g| usable_in(g, period))
            .collect();
        grants.sort_by_key(|g| (g.expires_on.is_none(), g.expires_on, g.granted_at, g.id));
        grants
    }

    /// Add the period's credit lines to its invoice: a finalized invoice's
    /// draws as they were made, else what it would draw now. The invoice's
    /// total is then what is due.
    pub fn apply(&self, invoice: &mut Invoice, period: Period, finalized: bool) {
        let account = invoice.account.clone();
        let draws: Vec<(i64, Decimal)> = if finalized {
            let label = period.to_string();
            self.draws
                .iter()
                .filter(|d| d.account == account && d.period == label)
                .map(|d| (d.grant_id, d.usd))
                .collect()
        } else {
            let mut left = self.left_after_finalized(&account);
            draw(&self.available(&account, period), &mut left, invoice.total)
        };
        for (grant_id, usd) in draws {
            if let Some(g) = self.grants.iter().find(|g| g.id == grant_id) {
                invoice.lines.push(credit_line(g, usd));
                invoice.draws.push(CreditDraw {
                    account: account.clone(),
                    period: period.to_string(),
                    grant_id,
                    usd,
                });
            }
        }
        invoice.total = cents(invoice.lines.iter().map(|l| l.amount).sum());
    }

    /// The account's credit as of `today`: every grant with what was drawn
    /// on it, and the balance. `open` are what the account's invoices not
    /// finalized yet would draw against, as [`CreditBook::open_periods`]
    /// lists them, in period order: what they would draw counts as pending.
    /// A grant counts as expired once the month it expires in is over (until
    /// then an invoice may still draw on it).
    pub fn status(
        &self,
        account: &str,
        open: &[(Period, Decimal)],
        today: NaiveDate,
    ) -> CreditStatus {
        let mut left = self.left_after_finalized(account);
        let mut pending: Vec<DrawView> = Vec::new();
        for (period, total) in open {
            for (grant_id, usd) in draw(&self.available(account, *period), &mut left, *total) {
                pending.push(DrawView {
                    period: period.to_string(),
                    grant_id,
                    usd,
                    finalized: false,
                });
            }
        }
        let mut status = CreditStatus {
            account: account.to_owned(),
            ..CreditStatus::default()
        };
        for g in self.grants_of(account) {
            let drawn: Decimal = self
                .draws
                .iter()
                .filter(|d| d.grant_id == g.id)
                .map(|d| d.usd)
                .sum();
            let pending_here: Decimal = pending
                .iter()
                .filter(|d| d.grant_id == g.id)
                .map(|d| d.usd)
                .sum();
            let rest = left.get(&g.id).copied().unwrap_or_default();
            let state = if g.voided_at.is_some() {
                status.voided_usd += rest;
                "voided"
            } else if !usable_in(g, Period::of_day(today)) {
                status.expired_usd += rest;
                "expired"
            } else {
                status.balance_usd += rest;
                if rest.is_zero() { "used" } else { "active" }
            };
            status.granted_usd += g.usd;
            status.drawn_usd += drawn;
            status.pending_usd += pending_here;
            status.grants.push(GrantView {
                id: g.id,
                usd: g.usd,
                granted_at: rfc3339(g.granted_at),
                expires_on: g.expires_on,
                note: g.note.clone(),
                voided_at: g.voided_at.map(rfc3339),
                drawn_usd: drawn,
                pending_usd: pending_here,
                left_usd: if state == "active" || state == "used" {
                    rest
                } else {
                    Decimal::ZERO
                },
                state,
            });
        }
        status.draws = self
            .draws
            .iter()
            .filter(|d| d.account == account)
            .map(|d| DrawView {
                period: d.period.clone(),
                grant_id: d.grant_id,
                usd: d.usd,
                finalized: true,
            })
            .chain(pending)
            .collect();
        status.in_cents()
    }

    /// The periods whose open invoices may still draw on the account's
    /// credit, up to and including `current`: those not finalized
    /// (`finalized` lists the account's finalized periods) that a grant
    /// with something left may pay, from the month it was granted to the
    /// month it expires in.
    pub fn open_periods(
        &self,
        account: &str,
        finalized: &[Period],
        current: Period,
    ) -> Vec<Period> {
        let left = self.left_after_finalized(account);
        let mut periods = std::collections::BTreeSet::new();
        for g in self
            .grants_of(account)
            .filter(|g| g.voided_at.is_none())
            .filter(|g| left.get(&g.id).is_some_and(|l| !l.is_zero()))
        {
            let last = g
                .expires_on
                .map_or(current, |e| Period::of_day(e).min(current));
            let mut p = Period::of_day(date_of(g.granted_at));
            while p <= last {
                if !finalized.contains(&p) {
                    periods.insert(p);
                }
                p = p.next();
            }
        }
        periods.into_iter().collect()
    }
}

/// Whether a grant's expiry still lets the invoice of `period` draw on it.
fn usable_in(g: &CreditGrant, period: Period) -> bool {
    g.expires_on.is_none_or(|e| e >= period.first_day())
}

/// Draw up to `total` on `grants` in order, from what each has `left`
/// (which this reduces): (grant, amount) per grant drawn on.
fn draw(grants: &[&CreditGrant], left: &mut Left, total: Decimal) -> Vec<(i64, Decimal)> {
    let mut due = total;
    let mut out = Vec::new();
    for g in grants {
        if due <= Decimal::ZERO {
            break;
        }
        let Some(rest) = left.get_mut(&g.id) else {
            continue;
        };
        let take = (*rest).min(due);
        if take > Decimal::ZERO {
            *rest -= take;
            due -= take;
            out.push((g.id, take));
        }
    }
    out
}

fn credit_line(g: &CreditGrant, usd: Decimal) -> Line {
    let mut description = format!("prepaid credit #{}", g.id);
    if let Some(note) = g.note.as_deref().filter(|n| !n.is_empty()) {
        description.push_str(&format!(" ({note})"));
    }
    let amount = cents(-usd);
    let granted = date_of(g.granted_at).to_string();
    Line::flat(Charge::Credit, description, granted, amount)
}

/// An account's credit as `GET /v1/accounts/{account}/credits` shows it.
/// `granted = drawn + pending + expired + voided + balance`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CreditStatus {
    pub account: String,
    /// What is left to spend: not drawn by finalized invoices, not pending
    /// on open ones, not expired, not voided.
    pub balance_usd: Decimal,
    pub granted_usd: Decimal,
    /// Drawn by finalized invoices (permanent).
    pub drawn_usd: Decimal,
    /// What the open invoices would draw if finalized now.
    pub pending_usd: Decimal,
    pub expired_usd: Decimal,
    pub voided_usd: Decimal,
    pub grants: Vec<GrantView>,
    /// What each invoice drew (finalized) or would draw (open).
    pub draws: Vec<DrawView>,
}

impl CreditStatus {
    /// Every amount as money: to the cent, two decimals.
    fn in_cents(mut self) -> Self {
        for x in [
            &mut self.balance_usd,
            &mut self.granted_usd,
            &mut self.drawn_usd,
            &mut self.pending_usd,
            &mut self.expired_usd,
            &mut self.voided_usd,
        ] {
            *x = cents(*x);
        }
        for g in &mut self.grants {
            for x in [
                &mut g.usd,
                &mut g.drawn_usd,
                &mut g.pending_usd,
                &mut g.left_usd,
            ] {
                *x = cents(*x);
            }
        }
        for d in &mut self.draws {
            d.usd = cents(d.usd);
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantView {
    pub id: i64,
    pub usd: Decimal,
    pub granted_at: String,
    pub expires_on: Option<NaiveDate>,
    pub note: Option<String>,
    pub voided_at: Option<String>,
    pub drawn_usd: Decimal,
    pub pending_usd: Decimal,
    /// What may still be drawn (0 once expired or voided).
    pub left_usd: Decimal,
    /// `active`, `used`, `expired` or `voided`.
    pub state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrawView {
    pub period: String,
    pub grant_id: i64,
    pub usd: Decimal,
    pub finalized: bool,
}

impl Invoice {
    /// The total before credit: what credit may be drawn against.
    pub fn total_before_credit(&self) -> Decimal {
        cents(
            self.lines
                .iter()
                .filter(|l| l.charge.category() < Category::Credit)
                .map(|l| l.amount)
                .sum(),
        )
    }
}
