//! Draft invoices: the charges of a period computed from the ledger as it
//! stands (or as it stood at a cutoff), one account or every account in one
//! pass, with adjustments for late usage of finalized periods.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::adjustments::adjustments_for;
use super::containers::{
    self, CONTAINER_LIFETIME_MICROS, ContainerBill, ContainerValues, bill_containers,
};
use super::credits::CreditBook;
use super::details;
use super::invoice::{Invoice, assemble};
use super::period::Period;
use super::rating::LineBook;
use super::{BillingError, render};
use crate::plans::Plan;
use crate::pricing::PriceBook;
use crate::record::Dimension;
use crate::store::{Store, UsageGroup, UsageQuery};

/// The invoice of `account` for `period`: the frozen one when finalized,
/// else a draft from the ledger as it is now (with adjustments for late
/// records of earlier finalized periods).
pub async fn invoice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
) -> Result<Rendered, BillingError> {
    if let Some(f) = store
        .finalized_invoice(account, &period.to_string())
        .await?
    {
        return Ok(Rendered {
            json: f.json,
            csv: f.csv,
            invoice: None,
            number: Some(f.number),
        });
    }
    let draft = draft_invoice(store, book, account, period).await?;
    Ok(Rendered {
        json: render::json(&draft),
        csv: render::csv(&draft),
        number: None,
        invoice: Some(draft),
    })
}

/// An invoice as served: the exact bytes of both formats.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: String,
    pub csv: String,
    pub number: Option<String>,
    /// The structured draft (absent for a finalized invoice, whose bytes are the truth).
    pub invoice: Option<Invoice>,
}

/// The draft invoice of `account` for `period`, from the ledger as it is now.
pub async fn draft_invoice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
) -> Result<Invoice, BillingError> {
    let max_seq = store.max_seq().await?;
    draft_as_of(store, book, account, period, Cutoff::Now(max_seq)).await
}

/// The draft from the given state of the ledger, adjustments included.
pub async fn draft_as_of(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    cutoff: Cutoff,
) -> Result<Invoice, BillingError> {
    draft_issued(store, book, account, period, cutoff, None).await
}

/// [`draft_as_of`], issued on `issued` when finalizing: its dates set.
pub(super) async fn draft_issued(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    cutoff: Cutoff,
    issued: Option<chrono::NaiveDate>,
) -> Result<Invoice, BillingError> {
    let data = PeriodData::load(store, book, period, cutoff, Some(account), &[]).await?;
    let mut invoice = data.charges(book, account, period);
    invoice.add_adjustments(adjustments_for(store, book, account, period, cutoff.seq()).await?);
    CreditBook::load(store, Some(account))
        .await?
        .apply(&mut invoice, period, false);
    let (seller, bill_to) = details::details_at(store, account, i64::MAX).await?;
    details::apply(
        &mut invoice,
        period,
        seller.as_ref(),
        bill_to.as_ref(),
        issued,
    );
    Ok(invoice)
}

/// Draft invoices of every account with usage (or containers) in `period`,
/// sorted by account. Usage is read in one pass for all accounts.
pub async fn draft_invoices(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<Vec<Invoice>, BillingError> {
    let max_seq = store.max_seq().await?;
    let data = PeriodData::load(store, book, period, Cutoff::Now(max_seq), None, &[]).await?;
    let accounts = data.accounts(store, period).await?;
    let credits = CreditBook::load(store, None).await?;
    let mut invoices = Vec::with_capacity(accounts.len());
    for account in accounts {
        let mut invoice = data.charges(book, &account, period);
        let adjustments = adjustments_for(store, book, &account, period, max_seq).await?;
        if adjustments.is_empty() && !data.has_charges(&account, period) {
            continue;
        }
        invoice.add_adjustments(adjustments);
        credits.apply(&mut invoice, period, false);
        let (seller, bill_to) = details::details_at(store, &account, i64::MAX).await?;
        details::apply(
            &mut invoice,
            period,
            seller.as_ref(),
            bill_to.as_ref(),
            None,
        );
        invoices.push(invoice);
    }
    Ok(invoices)
}

/// Every account's invoice for a period, as served: finalized invoices as
/// frozen, the others as drafts (computed in one pass), sorted by account.
pub async fn period_invoices(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<Vec<Rendered>, BillingError> {
    let mut out = Vec::new();
    for draft in draft_invoices(store, book, period).await? {
        out.push(
            match store
                .finalized_invoice(&draft.account, &period.to_string())
                .await?
            {
                Some(f) => Rendered {
                    json: f.json,
                    csv: f.csv,
                    number: Some(f.number),
                    invoice: None,
                },
                None => Rendered {
                    json: render::json(&draft),
                    csv: render::csv(&draft),
                    number: None,
                    invoice: Some(draft),
                },
            },
        );
    }
    Ok(out)
}

/// Invoices' CSV documents joined into one (the header once).
pub fn joined_csv<'a>(documents: impl IntoIterator<Item = &'a Rendered>) -> String {
    let mut out = render::csv_document(std::iter::empty());
    for r in documents {
        if let Some((_, rows)) = r.csv.split_once("\r\n") {
            out.push_str(rows);
        }
    }
    out
}

/// Every account's invoice for a period as one CSV document.
pub async fn period_csv(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<String, BillingError> {
    Ok(joined_csv(&period_invoices(store, book, period).await?))
}

/// Which state of the ledger to bill: a cutoff in the ledger's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// As it is now (`seq` is the newest record when the computation began;
    /// roll-ups may include a few records committed since).
    Now(i64),
    /// Exactly the records with `seq <=` this: what a finalized invoice saw.
    AsOf(i64),
}

impl Cutoff {
    pub(super) fn seq(self) -> i64 {
        match self {
            Cutoff::Now(s) | Cutoff::AsOf(s) => s,
        }
    }

    /// May the answer come from the roll-ups (the ledger as it is now)?
    fn may_use_rollup(self) -> bool {
        matches!(self, Cutoff::Now(_))
    }
}

/// What one period's invoices are computed from: usage summed by the
/// database, record counts, and the org-wide container bill split per
/// account (so one account's charges never scan every container).
pub(super) struct PeriodData {
    pub(super) usage: BTreeMap<String, Vec<UsageGroup>>,
    pub(super) iterations: BTreeMap<String, Vec<UsageGroup>>,
    pub(super) counts: BTreeMap<String, i64>,
    pub(super) bills: BTreeMap<String, ContainerBill>,
    pub(super) allowance: Vec<containers::AllowanceUse>,
    /// Split by dimensions: each account's billed container seconds by day
    /// and by the values of each container's first billable record.
    pub(super) container_values: ContainerValues,
    /// How many dimensions the usage groups carry values of.
    pub(super) dims: usize,
    /// Each account's plan in force (accounts without one pay cost).
    pub(super) plans: BTreeMap<String, Arc<Plan>>,
}

impl PeriodData {
    pub(super) async fn load(
        store: &dyn Store,
        book: &PriceBook,
        period: Period,
        cutoff: Cutoff,
        account: Option<&str>,
        dims: &[Dimension],
    ) -> Result<PeriodData, BillingError> {
        let (from, to) = period.bounds();
        let query = UsageQuery {
            account: account.map(str::to_owned),
            from,
            to,
            max_seq: cutoff.seq(),
            thresholds: book.thresholds(),
            // A split by more than one dimension reads the records.
            use_rollup: cutoff.may_use_rollup(),
            dims: dims.to_vec(),
        };
        let by_account = |groups: Vec<UsageGroup>| {
            let mut map: BTreeMap<String, Vec<UsageGroup>> = BTreeMap::new();
            for g in groups {
                map.entry(g.account.clone()).or_default().push(g);
            }
            map
        };
        // Independent reads: at once, each on its own connection.
        let (mut bill, container_values, usage, iterations, counts, plans) = tokio::try_join!(
            container_bill(store, book, period, cutoff),
            container_values(store, book, period, cutoff, dims),
            async { Ok(by_account(store.usage_groups(&query).await?)) },
            async { Ok(by_account(store.iteration_groups(&query).await?)) },
            async { Ok(store.record_counts(&query).await?.into_iter().collect()) },
            async { Ok(crate::plans::in_force(store, account).await?) },
        )?;
        let allowance = std::mem::take(&mut bill.allowance);
        Ok(PeriodData {
            bills: bill.by_account(),
            allowance,
            container_values,
            dims: dims.len(),
            usage,
            iterations,
            counts,
            plans,
        })
    }

    /// Price these accounts by these plans (or at cost, for `None`)
    /// instead of the plans in force.
    pub(super) fn use_plans(&mut self, plans: &BTreeMap<String, Option<Arc<Plan>>>) {
        for (account, plan) in plans {
            match plan {
                Some(p) => self.plans.insert(account.clone(), p.clone()),
                None => self.plans.remove(account),
            };
        }
    }

    /// The account's plan in force, if any.
    pub(super) fn plan(&self, account: &str) -> Option<Arc<Plan>> {
        self.plans.get(account).cloned()
    }

    /// Accounts that may have an invoice in the period: those with usage or
    /// containers in it, those whose plan has a minimum commitment for it,
    /// and those with an earlier finalized invoice (late usage of it is
    /// billed here as an adjustment, even without usage now).
    pub(super) async fn accounts(
        &self,
        store: &dyn Store,
        period: Period,
    ) -> Result<Vec<String>, BillingError> {
        let mut accounts: Vec<String> = self.counts.keys().cloned().collect();
        accounts.extend(self.bills.keys().cloned());
        accounts.extend(
            self.plans
                .keys()
                .filter(|a| self.committed(a, period))
                .cloned(),
        );
        accounts.extend(store.finalized_accounts_before(&period.to_string()).await?);
        accounts.sort();
        accounts.dedup();
        Ok(accounts)
    }

    /// Whether the account has records or containers in the period, or
    /// owes its plan's minimum commitment for it.
    pub(super) fn has_charges(&self, account: &str, period: Period) -> bool {
        self.counts.contains_key(account)
            || self.bills.contains_key(account)
            || self.committed(account, period)
    }

    /// Whether the account's plan commits it to a minimum for the period
    /// (a month that has begun: a future month owes nothing yet).
    fn committed(&self, account: &str, period: Period) -> bool {
        period.first_day() <= chrono::Utc::now().date_naive()
            && self
                .plans
                .get(account)
                .and_then(|p| p.version_at(period.first_day()))
                .and_then(|v| v.minimum_monthly_usd)
                .is_some_and(|m| m > rust_decimal::Decimal::ZERO)
    }

    pub(super) fn charges(&self, book: &PriceBook, account: &str, period: Period) -> Invoice {
        let thresholds = book.thresholds();
        let mut lines = LineBook::priced_by(self.plan(account));
        for g in self.usage.get(account).into_iter().flatten() {
            lines.add_tokens(book, &thresholds, g, true);
        }
        for g in self.iterations.get(account).into_iter().flatten() {
            lines.add_tokens(book, &thresholds, g, false);
        }
        let bill = self.bills.get(account);
        if let Some(bill) = bill {
            lines.add_containers_where(bill, |_| true);
        }
        let records = self.counts.get(account).copied().unwrap_or(0);
        let containers = bill.map_or(0, ContainerBill::container_count);
        let mut invoice = assemble(account, period, lines, records, containers);
        invoice.add_minimum_commitment(self.plans.get(account).map(|p| p.as_ref()), period);
        invoice
    }
}

/// Container charges of every account in a period (the free allowance is
/// shared org-wide). At `Cutoff::Now`, from the container roll-up (the
/// ledger as it is now; see `store::containers`), else from the records up
/// to the cutoff.
pub async fn container_bill(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
    cutoff: Cutoff,
) -> Result<ContainerBill, BillingError> {
    let (from, to) = period.bounds();
    let max_seq = cutoff.seq();
    if cutoff.may_use_rollup() {
        let day = crate::time::day_number;
        let days = store.container_days(day(from), day(to)).await?;
        let inexact = store
            .inexact_container_records(from - CONTAINER_LIFETIME_MICROS, to, &[])
            .await?;
        if let Some(bill) = containers::bill_from_rollup(book, &days, &inexact, &period) {
            return Ok(bill);
        }
    }
    let records = store
        .container_records(
            from - CONTAINER_LIFETIME_MICROS,
            to + CONTAINER_LIFETIME_MICROS,
            max_seq,
            &[],
        )
        .await?;
    Ok(bill_containers(book, &records, &period))
}

/// Billed container seconds of a period by account, day and the values of
/// `dims` of each container's first billable record (empty without `dims`).
/// Split by one dimension at `Cutoff::Now`, from the container roll-up's
/// sums per value; else from the records up to the cutoff.
pub async fn container_values(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
    cutoff: Cutoff,
    dims: &[Dimension],
) -> Result<ContainerValues, BillingError> {
    if dims.is_empty() {
        return Ok(ContainerValues::new());
    }
    let (from, to) = period.bounds();
    if let ([dim], true) = (dims, cutoff.may_use_rollup())
        && let Some(name) = dim.rollup_name()
    {
        // The values first, then the totals (as for token usage): a
        // container committed between the two reads then counts without a
        // value rather than twice.
        let day = crate::time::day_number;
        let by_value = store.container_dim_days(&name, day(from), day(to)).await?;
        let days = store.container_days(day(from), day(to)).await?;
        let inexact = store
            .inexact_container_records(from - CONTAINER_LIFETIME_MICROS, to, dims)
            .await?;
        if let Some(values) =
            containers::values_from_rollup(book, &days, &by_value, &inexact, &period)
        {
            return Ok(values);
        }
    }
    let records = store
        .container_records(
            from - CONTAINER_LIFETIME_MICROS,
            to + CONTAINER_LIFETIME_MICROS,
            cutoff.seq(),
            dims,
        )
        .await?;
    Ok(containers::billed_by_values(book, &records, &period))
}
