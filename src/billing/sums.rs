//! What a period's charges are computed from: the state of the ledger to
//! bill (a [`Cutoff`]), usage summed by the database, record counts and
//! the org-wide container bill split per account. Drafts, adjustments and
//! daily costs all start here.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::BillingError;
use super::containers::{
    self, CONTAINER_LIFETIME_MICROS, ContainerBill, ContainerValues, bill_containers,
};
use super::invoice::{Invoice, assemble};
use super::period::Period;
use super::rating::LineBook;
use crate::plans::Plan;
use crate::pricing::PriceBook;
use crate::record::Dimension;
use crate::store::{Store, UsageGroup, UsageQuery};

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
