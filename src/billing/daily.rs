//! A period's charges split by UTC day: what the dashboard, the cost report,
//! the FOCUS export and budgets are built from.
//!
//! Each account's period is billed exactly as its invoice bills it (a draft
//! from the ledger as it is now; a finalized invoice as of its cutoff), and
//! every invoice line's rounded amount is split across the days of its usage
//! by the largest-remainder method in whole cents. So any sum of daily
//! figures over a whole period equals the invoice to the cent, while each
//! day still carries its exact amount.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::adjustments::adjustments_for;
use super::containers::{AllowanceUse, split_by_weight};
use super::rating::{line_of, priced};
use super::sums::PeriodData;
use super::{BillingError, Charge, Cutoff, Invoice, LineBook, LineKey, Period, cents};
use crate::plans::Plan;
use crate::pricing::PriceBook;
use crate::record::Dimension;
use crate::store::Store;

/// One account's charge of one kind (one invoice line key) on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCost {
    pub account: String,
    pub day: NaiveDate,
    /// When split by dimensions, their values (else empty).
    pub values: Vec<Option<String>>,
    pub key: LineKey,
    /// In the line's unit (tokens, requests, hours).
    pub quantity: Decimal,
    /// What the account pays for this part (its plan's price; the cost
    /// without a plan), exact.
    pub amount_exact: Decimal,
    /// This day's whole cents of the invoice line's rounded amount.
    pub amount: Decimal,
    /// What this part costs (the price book's), exact.
    pub cost_exact: Decimal,
    /// This day's whole cents of the line's rounded cost.
    pub cost: Decimal,
}

impl DayCost {
    /// This part's whole cents of the line's price, or of its cost.
    pub fn cents(&self, of: Amount) -> Decimal {
        match of {
            Amount::Price => self.amount,
            Amount::Cost => self.cost,
        }
    }

    fn cents_mut(&mut self, of: Amount) -> &mut Decimal {
        match of {
            Amount::Price => &mut self.amount,
            Amount::Cost => &mut self.cost,
        }
    }
}

/// Which of a line's two amounts: what the account pays, or what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Price,
    Cost,
}

/// One account's period as billed.
#[derive(Debug, Clone)]
pub struct AccountCosts {
    /// The invoice (a draft, or the finalized invoice as recomputed from its
    /// cutoff: the same figures as the frozen one while the price book that
    /// priced it is unchanged), adjustment lines included.
    pub invoice: Invoice,
    /// Its charges by day; adjustment lines are not in here.
    pub days: Vec<DayCost>,
    /// Refusals before output the book did not charge, by day.
    pub unbilled_refusals: BTreeMap<NaiveDate, i64>,
    /// The invoice number when finalized.
    pub number: Option<String>,
    /// Usage of this period recorded after finalization, exact and rounded:
    /// it is billed as an adjustment on the account's next open period.
    pub late: Decimal,
    /// The account's plan in force (none: it pays cost).
    pub plan: Option<Arc<Plan>>,
}

impl AccountCosts {
    /// The cost and the price of the period's usage lines (before minimum
    /// commitments, adjustments, credits and tax), each line rounded.
    pub fn usage_cost_and_price(&self) -> (Decimal, Decimal) {
        self.invoice
            .usage_lines()
            .fold((Decimal::ZERO, Decimal::ZERO), |(c, p), l| {
                (c + l.cost.amount, p + l.amount)
            })
    }
}

/// Every account's charges in a period.
#[derive(Debug, Clone)]
pub struct PeriodCosts {
    pub period: Period,
    /// The newest ledger record when the computation began.
    pub max_seq: i64,
    pub accounts: Vec<AccountCosts>,
    /// Free container allowance buckets touching the period (org-wide).
    pub allowance: Vec<AllowanceUse>,
}

impl PeriodCosts {
    pub fn total(&self) -> Decimal {
        cents(self.accounts.iter().map(|a| a.invoice.total).sum())
    }

    pub fn account(&self, account: &str) -> Option<&AccountCosts> {
        self.accounts.iter().find(|a| a.invoice.account == account)
    }

    /// Every account's daily charges.
    pub fn days(&self) -> impl Iterator<Item = &DayCost> {
        self.accounts.iter().flat_map(|a| a.days.iter())
    }

    /// The share of these costs (split by dimensions) whose values `keep`
    /// accepts: each account's matching days, its invoice rebuilt from them.
    /// Adjustments, unpriced usage, record and refusal counts cannot be
    /// attributed to a value and are left out; accounts left with nothing
    /// are dropped.
    pub fn filtered(&self, keep: impl Fn(&[Option<String>]) -> bool) -> PeriodCosts {
        let accounts = self
            .accounts
            .iter()
            .filter_map(|a| {
                let days: Vec<DayCost> =
                    a.days.iter().filter(|d| keep(&d.values)).cloned().collect();
                if days.is_empty() {
                    return None;
                }
                let mut lines: BTreeMap<&LineKey, [Decimal; 5]> = BTreeMap::new();
                for d in &days {
                    let e = lines.entry(&d.key).or_default();
                    for (sum, part) in e.iter_mut().zip([
                        d.quantity,
                        d.amount_exact,
                        d.amount,
                        d.cost_exact,
                        d.cost,
                    ]) {
                        *sum += part;
                    }
                }
                let lines = lines
                    .into_iter()
                    .map(|(key, [quantity, exact, amount, cost_exact, cost])| {
                        let mut line = line_of(key.clone(), Decimal::ZERO, a.plan.as_deref());
                        line.quantity = quantity.normalize();
                        line.amount_exact = exact.normalize();
                        line.amount = amount;
                        line.cost.amount_exact = cost_exact.normalize();
                        line.cost.amount = cost;
                        line
                    })
                    .collect();
                let mut invoice =
                    super::assemble(&a.invoice.account, self.period, LineBook::default(), 0, 0);
                invoice.lines = lines;
                invoice.total = cents(invoice.lines.iter().map(|l| l.amount).sum());
                let sum = |cat: super::Category| {
                    cents(
                        invoice
                            .lines
                            .iter()
                            .filter(|l| l.charge.category() == cat)
                            .map(|l| l.amount)
                            .sum(),
                    )
                };
                invoice.subtotals = super::Subtotals {
                    tokens: sum(super::Category::Tokens),
                    web_search: sum(super::Category::WebSearch),
                    code_execution: sum(super::Category::CodeExecution),
                };
                invoice.number = a.invoice.number.clone();
                invoice.status = a.invoice.status;
                Some(AccountCosts {
                    invoice,
                    days,
                    unbilled_refusals: BTreeMap::new(),
                    number: a.number.clone(),
                    late: Decimal::ZERO,
                    plan: a.plan.clone(),
                })
            })
            .collect();
        PeriodCosts {
            period: self.period,
            max_seq: self.max_seq,
            accounts,
            allowance: self.allowance.clone(),
        }
    }

    /// Every account's unbilled refusals by day: (account, day, count).
    pub fn unbilled_refusals(&self) -> impl Iterator<Item = (&str, NaiveDate, i64)> {
        self.accounts.iter().flat_map(|a| {
            a.unbilled_refusals
                .iter()
                .map(|(day, n)| (a.invoice.account.as_str(), *day, *n))
        })
    }
}

/// Compute a period's costs for every account (or one), split by `dims`
/// (each day's charges further by their values) when there are any.
pub async fn period_costs(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
    only: Option<&str>,
    dims: &[Dimension],
) -> Result<PeriodCosts, BillingError> {
    let max_seq = store.max_seq().await?;
    let mut now = PeriodData::load(store, book, period, Cutoff::Now(max_seq), only, dims).await?;
    let finalized_refs: Vec<_> = store
        .finalized_in_period(&period.to_string())
        .await?
        .into_iter()
        .filter(|f| only.is_none_or(|o| o == f.account))
        .collect();
    // A finalized invoice was priced by the plan as it was then: its
    // figures here are too, whatever plan was set since.
    let mut plans_then = BTreeMap::new();
    for f in &finalized_refs {
        let plan = crate::plans::plan_as_of(store, &f.account, f.finalized_at).await?;
        plans_then.insert(f.account.clone(), plan);
    }
    now.use_plans(&plans_then);
    let finalized: BTreeMap<String, (String, i64)> = finalized_refs
        .into_iter()
        .map(|f| (f.account, (f.number, f.cutoff_seq)))
        .collect();
    let mut accounts = now.accounts(store, period).await?;
    accounts.extend(finalized.keys().cloned());
    if let Some(o) = only {
        accounts.retain(|a| a == o);
        if accounts.is_empty() {
            accounts.push(o.to_owned());
        }
    }
    accounts.sort();
    accounts.dedup();
    let credits = super::credits::CreditBook::load(store, only).await?;

    // Nothing recorded for the period (or containers reaching into the next
    // month) since a cutoff: the ledger now bills it as it was then.
    let (from, to) = period.bounds();
    let newest = store
        .newest_seq_in_days(
            crate::time::day_number(from),
            crate::time::day_number(to + super::containers::CONTAINER_LIFETIME_MICROS),
        )
        .await?;
    // Rating and splitting each account's usage is the costly part of a
    // split by dimension (tens of thousands of groups): over the cores.
    let computed = in_parallel(&accounts, |account| {
        (
            now.charges(book, account, period),
            split_by_day(&now, book, account),
        )
    });
    let mut out = Vec::with_capacity(accounts.len());
    for (account, (now_invoice, now_split)) in accounts.into_iter().zip(computed) {
        let then_data;
        let (data, basis, number) = match finalized.get(&account) {
            // Finalized, and records arrived since: bill it as of its cutoff
            // (reading the records up to it, as finalizing did).
            Some((number, cutoff)) if newest > *cutoff => {
                let cutoff = Cutoff::AsOf(*cutoff);
                let mut data =
                    PeriodData::load(store, book, period, cutoff, Some(&account), dims).await?;
                data.use_plans(&plans_then);
                then_data = data;
                (&then_data, cutoff, Some(number.clone()))
            }
            Some((number, cutoff)) => (&now, Cutoff::AsOf(*cutoff), Some(number.clone())),
            None => (&now, Cutoff::Now(max_seq), None),
        };
        let (mut invoice, late, (days, unbilled_refusals)) = if std::ptr::eq(data, &now) {
            (now_invoice, Decimal::ZERO, now_split)
        } else {
            let invoice = data.charges(book, &account, period);
            let late = now_invoice.total - invoice.total;
            (invoice, late, split_by_day(data, book, &account))
        };
        let adjustments = adjustments_for(store, book, &account, period, basis.seq()).await?;
        if adjustments.is_empty()
            && number.is_none()
            && !now.has_charges(&account, period)
            && only.is_none()
        {
            continue;
        }
        invoice.add_adjustments(adjustments);
        credits.apply(&mut invoice, period, number.is_some());
        // A finalized invoice with the parties and tax it was frozen with
        // (read back from its document: whatever changed since, or raced
        // the finalization, is not what it says).
        if number.is_some() {
            if let Some(frozen) = store
                .finalized_invoice(&account, &period.to_string())
                .await?
            {
                super::details::apply_frozen(&mut invoice, &frozen.json)?;
            }
        } else {
            let (seller, bill_to) = super::details::details_at(store, &account, i64::MAX).await?;
            super::details::apply(
                &mut invoice,
                period,
                seller.as_ref(),
                bill_to.as_ref(),
                None,
            );
        }
        if let Some(n) = &number {
            invoice.number = Some(n.clone());
            invoice.status = "finalized";
        }
        out.push(AccountCosts {
            invoice,
            days,
            unbilled_refusals,
            number,
            late,
            plan: data.plan(&account),
        });
    }
    Ok(PeriodCosts {
        period,
        max_seq,
        accounts: out,
        allowance: now.allowance.clone(),
    })
}

/// `f` of each item, in order, computed on as many threads as there are
/// cores (each takes the next item not yet taken). A panic in `f` is passed on.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Where a part of a line's usage falls: its UTC day and, when the period is
/// split by dimensions, their values.
type Part = (NaiveDate, Vec<Option<String>>);

/// One account's charges by day (and dimension values), each line's cents
/// split across its parts; and its unbilled refusals by day.
fn split_by_day(
    data: &PeriodData,
    book: &PriceBook,
    account: &str,
) -> (Vec<DayCost>, BTreeMap<NaiveDate, i64>) {
    let thresholds = book.thresholds();
    let plan = data.plan(account);
    let new_book = || LineBook::priced_by(plan.clone());
    let mut books: BTreeMap<Part, LineBook> = BTreeMap::new();
    let day_of = |d: i64| crate::time::date_of_day_number(d).unwrap_or_default();
    for g in data.usage.get(account).into_iter().flatten() {
        books
            .entry((day_of(g.rate.day), g.values.clone()))
            .or_insert_with(new_book)
            .add_tokens(book, &thresholds, g, true);
    }
    for g in data.iterations.get(account).into_iter().flatten() {
        books
            .entry((day_of(g.rate.day), g.values.clone()))
            .or_insert_with(new_book)
            .add_tokens(book, &thresholds, g, false);
    }
    // This account's container seconds and credits, summed per day and line.
    let mut seconds: BTreeMap<(NaiveDate, Charge, &str, Decimal), i64> = BTreeMap::new();
    if let Some(bill) = data.bills.get(account) {
        for l in bill.line_seconds() {
            *seconds
                .entry((l.day, l.charge, l.price_version, l.hour_price))
                .or_default() += l.seconds;
        }
    }
    let unsplit = vec![None; data.dims];
    for ((day, charge, version, price), s) in seconds {
        // Split by dimensions: a day's seconds (and credits) go to the values
        // of its containers' first records, in whole seconds.
        let weights: Vec<(&Vec<Option<String>>, i64)> = data
            .container_values
            .get(&(account.to_owned(), day))
            .map(|by| by.iter().map(|(v, w)| (v, *w)).collect())
            .unwrap_or_default();
        if data.dims == 0 || weights.is_empty() {
            books
                .entry((day, unsplit.clone()))
                .or_insert_with(new_book)
                .add_container_seconds(charge, version, price, day, s);
            continue;
        }
        let indexed: Vec<(usize, i64)> = weights.iter().map(|(_, w)| *w).enumerate().collect();
        for (i, part) in split_by_weight(s.abs(), &indexed) {
            if let Some((values, _)) = weights.get(i) {
                books
                    .entry((day, (*values).clone()))
                    .or_insert_with(new_book)
                    .add_container_seconds(charge, version, price, day, part * s.signum());
            }
        }
    }

    let mut refusals: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for ((day, _), b) in &books {
        if b.unbilled_refusals() > 0 {
            *refusals.entry(*day).or_default() += b.unbilled_refusals();
        }
    }

    // Quantities per line key and part.
    let mut per_key: BTreeMap<LineKey, Vec<(Part, Decimal)>> = BTreeMap::new();
    for (part, lines) in books {
        for (key, quantity) in lines.lines {
            per_key
                .entry(key)
                .or_default()
                .push((part.clone(), quantity));
        }
    }
    let plan = plan.as_deref();
    let mut out = Vec::new();
    for (key, parts) in per_key {
        let total: Decimal = parts.iter().map(|(_, q)| *q).sum();
        let line = priced(&key, total, plan);
        let whole_cents =
            |exact: Decimal| (cents(exact) * Decimal::ONE_HUNDRED).to_i64().unwrap_or(0);
        let (price_cents, cost_cents) =
            (whole_cents(line.price_exact), whole_cents(line.cost_exact));
        // Quantities are whole tokens, requests or seconds, all of one sign.
        let weights: Vec<(usize, i64)> = parts
            .iter()
            .map(|(_, q)| q.abs().to_i64().unwrap_or(0))
            .enumerate()
            .collect();
        let price_split = split_by_weight(price_cents.abs(), &weights);
        let cost_split = split_by_weight(cost_cents.abs(), &weights);
        for ((((day, values), quantity), (_, price)), (_, cost)) in
            parts.into_iter().zip(price_split).zip(cost_split)
        {
            let part = priced(&key, quantity, plan);
            out.push(DayCost {
                account: account.to_owned(),
                day,
                values,
                key: key.clone(),
                quantity: part.quantity.normalize(),
                amount_exact: part.price_exact.normalize(),
                amount: signed_cents(price, price_cents),
                cost_exact: part.cost_exact.normalize(),
                cost: signed_cents(cost, cost_cents),
            });
        }
    }
    net_free_hours(&mut out, Amount::Price, plan);
    net_free_hours(&mut out, Amount::Cost, plan);
    // Each (day, values, key) once: an unstable sort gives the same order.
    out.sort_unstable_by(|a, b| (a.day, &a.values, &a.key).cmp(&(b.day, &b.values, &b.key)));
    (out, refusals)
}

/// `part` whole cents with the sign of the line's `line_cents`, as money.
fn signed_cents(part: i64, line_cents: i64) -> Decimal {
    let mut amount = Decimal::new(part * line_cents.signum(), 2);
    amount.rescale(2);
    if amount.is_zero() {
        amount.set_sign_positive(true);
    }
    amount
}

/// Split independently, a day's container hours and free hours could round
/// to a net of -$0.01 although the allowance never exceeds what was billed.
/// So the free-hours line's cents follow the net: the net of both lines is
/// split across days by each day's net seconds, and a day's free-hours cents
/// are its net share minus its container-hours cents. Done for the price
/// and for the cost alike.
fn net_free_hours(out: &mut [DayCost], of: Amount, plan: Option<&Plan>) {
    // By hour price: the allowance of a month is credited at the version of
    // its first day, which may differ from the version of a later container;
    // and by plan version. A price nets only where the plan prices free
    // hours as the container hours they offset (else the two lines are
    // priced apart, and so are their days).
    let mut groups: BTreeMap<(Decimal, Option<NaiveDate>), Vec<usize>> = BTreeMap::new();
    let mut prices: BTreeMap<(Decimal, Option<NaiveDate>), Vec<Decimal>> = BTreeMap::new();
    for (i, c) in out.iter().enumerate() {
        if matches!(
            c.key.charge,
            Charge::ContainerHours | Charge::ContainerFreeHours
        ) {
            let group = (c.key.unit_price, c.key.plan_version);
            groups.entry(group).or_default().push(i);
            prices
                .entry(group)
                .or_default()
                .push(priced(&c.key, Decimal::ZERO, plan).unit_price);
        }
    }
    for (group, indices) in groups {
        let one_price = prices
            .get(&group)
            .is_some_and(|p| p.iter().all(|x| Some(x) == p.first()));
        if of == Amount::Price && !one_price {
            continue;
        }
        // Per part: net hours, container-hours cents, the free-hours cost.
        type Net = (Decimal, Decimal, Option<usize>);
        let mut days: BTreeMap<(NaiveDate, &[Option<String>]), Net> = BTreeMap::new();
        for &i in &indices {
            let Some(c) = out.get(i) else { continue };
            let e = days.entry((c.day, c.values.as_slice())).or_default();
            e.0 += c.quantity; // hours, net (free hours are negative)
            if c.key.charge == Charge::ContainerHours {
                e.1 += c.cents(of);
            } else {
                e.2 = Some(i);
            }
        }
        // Only where every day has both lines (else the split stays as it is).
        if days.values().any(|d| d.2.is_none()) {
            continue;
        }
        let net_cents: Decimal = indices
            .iter()
            .filter_map(|&i| out.get(i))
            .map(|c| c.cents(of))
            .sum::<Decimal>()
            * Decimal::ONE_HUNDRED;
        let Some(net_cents) = net_cents.to_i64().filter(|n| *n >= 0) else {
            continue;
        };
        // Hours × 3600 are whole seconds. When the allowance covered all of
        // it, the net is only the lines' rounding: spread it like the hours.
        let seconds = |h: Decimal| {
            (h * Decimal::from(3600))
                .round()
                .to_i64()
                .unwrap_or(0)
                .max(0)
        };
        let mut weights: Vec<(usize, i64)> =
            days.values().map(|v| seconds(v.0)).enumerate().collect();
        if weights.iter().all(|w| w.1 == 0) {
            weights = days
                .values()
                .map(|v| i64::from(!v.1.is_zero()))
                .enumerate()
                .collect();
        }
        let days: Vec<(Decimal, Decimal, Option<usize>)> = days.into_values().collect();
        for ((_, net), (_, container, free)) in
            split_by_weight(net_cents, &weights).into_iter().zip(days)
        {
            if let Some(c) = free.and_then(|i| out.get_mut(i)) {
                let mut amount = Decimal::new(net, 2) - container;
                amount.rescale(2);
                if amount.is_zero() {
                    amount.set_sign_positive(true);
                }
                *c.cents_mut(of) = amount;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_line_split_across_days_keeps_its_cents() {
        // 7 cents over weights 1:1:1 → 3, 2, 2 (the earlier day takes the extra).
        let w = [(1, 1), (2, 1), (3, 1)];
        assert_eq!(split_by_weight(7, &w), [(1, 3), (2, 2), (3, 2)]);
    }
}
