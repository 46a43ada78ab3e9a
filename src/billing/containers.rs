//! Code-execution container time (docs/billing.md), org-wide for one period.
//!
//! - A record counts toward its container when it used code execution or had
//!   files preloaded, unless its request declared web search/fetch tools of
//!   version 20260209+ and the price-book version at its time makes code
//!   execution free with them. A container with no such record is not billed.
//! - Execution time: the union of the billable records' intervals
//!   `[started_at, recorded_at]` (empty without `started_at`), rounded up to
//!   whole seconds; billed time: at least the minimum, once per container.
//! - A container is charged to its account on the UTC day (and in the period)
//!   of its first billable record, at the prices in force that day.
//! - The free allowance is shared per day or month (price-book setting)
//!   across the organization pro rata to billed time, in whole seconds by the
//!   largest-remainder method (ties to the account name that sorts first), or
//!   given whole to each account (scope `account`).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::period::Period;
use crate::charge::Charge;
use crate::pricing::{AllowancePeriod, AllowanceScope, PriceBook, PriceVersion};
use crate::record::Refusal;
use crate::store::containers::ROLLUP_MINIMUM_SECONDS;
use crate::store::{ContainerDayRow, ContainerDimDayRow, ContainerRecord};
use crate::time::Micros;

/// Containers live at most 30 days: records of a container first used in a
/// period are found within this margin around it.
pub const CONTAINER_LIFETIME_MICROS: Micros = 31 * 86_400 * 1_000_000;

/// The containers of one account first billed on one day (so at one price).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargedContainers {
    pub account: String,
    pub day: NaiveDate,
    pub containers: i64,
    /// Execution time, whole seconds per container, before the minimum.
    pub execution_seconds: i64,
    /// Billed seconds: the sum of `max(execution, minimum)` per container.
    pub billed_seconds: i64,
    pub price_version: String,
    pub hour_price: Decimal,
}

/// Free seconds credited to one account on one day. An account's share of a
/// monthly allowance is spread over its days in proportion to the container
/// time it was billed on each (largest remainder again), so daily views add
/// up to the invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeCredit {
    pub account: String,
    pub day: NaiveDate,
    pub seconds: i64,
    pub price_version: String,
    pub hour_price: Decimal,
}

/// Container charges and free-allowance credits of every account in a period.
#[derive(Debug, Clone, Default)]
pub struct ContainerBill {
    /// Sorted by account, then day.
    pub containers: Vec<ChargedContainers>,
    pub credits: Vec<FreeCredit>,
    /// Allowance buckets: (allowance seconds, seconds used), for the dashboard.
    pub allowance: Vec<AllowanceUse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowanceUse {
    pub period: AllowancePeriod,
    pub start: NaiveDate,
    pub allowance_seconds: i64,
    pub billed_seconds: i64,
}

/// Seconds on one code-execution line of one account on one day: container
/// time charged, or free allowance credited (negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSeconds<'a> {
    pub account: &'a str,
    pub day: NaiveDate,
    pub charge: Charge,
    pub price_version: &'a str,
    pub hour_price: Decimal,
    pub seconds: i64,
}

impl ContainerBill {
    /// Every charge and credit of the bill as seconds on its line.
    pub fn line_seconds(&self) -> impl Iterator<Item = LineSeconds<'_>> {
        let charged = self.containers.iter().map(|c| LineSeconds {
            account: &c.account,
            day: c.day,
            charge: Charge::ContainerHours,
            price_version: &c.price_version,
            hour_price: c.hour_price,
            seconds: c.billed_seconds,
        });
        let credited = self.credits.iter().map(|f| LineSeconds {
            account: &f.account,
            day: f.day,
            charge: Charge::ContainerFreeHours,
            price_version: &f.price_version,
            hour_price: f.hour_price,
            seconds: -f.seconds,
        });
        charged.chain(credited)
    }

    /// Containers charged (of every account).
    pub fn container_count(&self) -> i64 {
        self.containers.iter().map(|c| c.containers).sum()
    }

    /// The bill split per account (containers and credits; the allowance
    /// buckets stay organization-wide), in one pass.
    pub fn by_account(self) -> BTreeMap<String, ContainerBill> {
        let mut out: BTreeMap<String, ContainerBill> = BTreeMap::new();
        for c in self.containers {
            out.entry(c.account.clone()).or_default().containers.push(c);
        }
        for f in self.credits {
            out.entry(f.account.clone()).or_default().credits.push(f);
        }
        out
    }
}

/// `records` must be ordered by container, then `recorded_at` (as the store returns them).
pub fn bill_containers(
    book: &PriceBook,
    records: &[ContainerRecord],
    period: &Period,
) -> ContainerBill {
    let containers = charge_each(book, records, period, BTreeMap::new());
    let (credits, allowance) = share_allowance(book, &containers);
    ContainerBill {
        containers,
        credits,
        allowance,
    }
}

/// The bill from the container roll-up: its day sums of exact containers,
/// plus the records of the containers it could not keep exactly. `None`
/// when a price version of the period has a minimum the roll-up does not
/// count apart (then the records are read instead).
pub fn bill_from_rollup(
    book: &PriceBook,
    days: &[ContainerDayRow],
    inexact: &[ContainerRecord],
    period: &Period,
) -> Option<ContainerBill> {
    let mut charged: BTreeMap<(String, NaiveDate), ChargedContainers> = BTreeMap::new();
    for row in days {
        let Some((day, version, billed)) = rollup_billed(book, row, period)? else {
            continue;
        };
        charged.insert(
            (row.account.clone(), day),
            ChargedContainers {
                account: row.account.clone(),
                day,
                containers: row.containers,
                execution_seconds: row.execution_seconds,
                billed_seconds: billed,
                price_version: version.label(),
                hour_price: version.container_hour,
            },
        );
    }
    let containers = charge_each(book, inexact, period, charged);
    let (credits, allowance) = share_allowance(book, &containers);
    Some(ContainerBill {
        containers,
        credits,
        allowance,
    })
}

/// The day, price version and billed seconds of a roll-up row: `Some(None)`
/// when its day is outside the period or unpriced, `None` when the version's
/// minimum is not one the roll-up counts apart.
fn rollup_billed<'b>(
    book: &'b PriceBook,
    row: &ContainerDayRow,
    period: &Period,
) -> Option<Option<(NaiveDate, &'b PriceVersion, i64)>> {
    let day = NaiveDate::from_epoch_days(i32::try_from(row.day).ok()?)?;
    if !period.contains(day) {
        return Some(None);
    }
    let Some(version) = book.version_at(day) else {
        return Some(None);
    };
    let minimum = version.container_minimum_seconds;
    let billed = if minimum == ROLLUP_MINIMUM_SECONDS {
        row.execution_seconds + minimum * row.short_containers - row.short_seconds
    } else if minimum <= 0 {
        row.execution_seconds
    } else {
        return None;
    };
    Some(Some((day, version, billed)))
}

/// Charge each container of `records` (grouped by container) and add it to
/// the per-account, per-day sums in `charged`.
fn charge_each(
    book: &PriceBook,
    records: &[ContainerRecord],
    period: &Period,
    mut charged: BTreeMap<(String, NaiveDate), ChargedContainers>,
) -> Vec<ChargedContainers> {
    for group in records.chunk_by(|a, b| a.container_id == b.container_id) {
        let Some(c) = charge_container(book, group, period) else {
            continue;
        };
        match charged.get_mut(&(c.account.clone(), c.day)) {
            Some(sum) => {
                sum.containers += c.containers;
                sum.execution_seconds += c.execution_seconds;
                sum.billed_seconds += c.billed_seconds;
            }
            None => {
                charged.insert((c.account.clone(), c.day), c);
            }
        }
    }
    charged.into_values().collect()
}

/// Billed container seconds by (account, day), then by dimension values.
pub type ContainerValues = BTreeMap<(String, NaiveDate), BTreeMap<Vec<Option<String>>, i64>>;

/// Billed seconds of containers by account, UTC day and the dimension
/// values of each container's first billable record (the rule by which a
/// split by workspace, API key, user or tag attributes container time).
/// `records` carry their values and are grouped by container.
pub fn billed_by_values(
    book: &PriceBook,
    records: &[ContainerRecord],
    period: &Period,
) -> ContainerValues {
    let mut out = ContainerValues::new();
    for group in records.chunk_by(|a, b| a.container_id == b.container_id) {
        let Some(c) = charge_container(book, group, period) else {
            continue;
        };
        let values = billable(book, group)
            .first()
            .map(|r| r.values.clone())
            .unwrap_or_default();
        *out.entry((c.account, c.day))
            .or_default()
            .entry(values)
            .or_default() += c.billed_seconds;
    }
    drop_zeros(&mut out);
    out
}

/// [`billed_by_values`] for a split by one dimension, from the container
/// roll-up: exact containers by their first record's value (`dim_days`; those
/// without a value are the rest of `days`), inexact ones from their records
/// (`inexact`, carrying their value). `None` as [`bill_from_rollup`].
pub fn values_from_rollup(
    book: &PriceBook,
    days: &[ContainerDayRow],
    dim_days: &[ContainerDimDayRow],
    inexact: &[ContainerRecord],
    period: &Period,
) -> Option<ContainerValues> {
    let mut out = ContainerValues::new();
    for row in days {
        if let Some((day, _, billed)) = rollup_billed(book, row, period)? {
            *out.entry((row.account.clone(), day))
                .or_default()
                .entry(vec![None])
                .or_default() += billed;
        }
    }
    for row in dim_days {
        if let Some((day, _, billed)) = rollup_billed(book, &row.sums, period)? {
            let values = out.entry((row.sums.account.clone(), day)).or_default();
            // Moved from the day's containers without a value to this one.
            *values.entry(vec![None]).or_default() -= billed;
            *values.entry(vec![Some(row.dim_value.clone())]).or_default() += billed;
        }
    }
    for (key, by_value) in billed_by_values(book, inexact, period) {
        let values = out.entry(key).or_default();
        for (value, billed) in by_value {
            *values.entry(value).or_default() += billed;
        }
    }
    drop_zeros(&mut out);
    Some(out)
}

/// Values without billed seconds weigh nothing in a split: both ways of
/// computing the split leave them out alike. (A negative weight can only
/// come from roll-up reads that a concurrent write fell between; the
/// split of the bill's seconds stays whole without it.)
fn drop_zeros(values: &mut ContainerValues) {
    for by_value in values.values_mut() {
        by_value.retain(|_, billed| *billed > 0);
    }
    values.retain(|_, by_value| !by_value.is_empty());
}

/// The records of one container that bill it, in time order: not those that
/// declared web tools when the book makes code execution free with them, nor
/// refusals the book does not charge.
fn billable<'a>(book: &PriceBook, group: &'a [ContainerRecord]) -> Vec<&'a ContainerRecord> {
    group
        .iter()
        .filter(|r| {
            let version = book.version_at(crate::time::date_of(r.recorded_at));
            let free = r.web_tools_20260209
                && version.is_some_and(|v| v.web_tools_make_code_execution_free);
            // A refusal the book does not charge adds no container time.
            let unbilled = Refusal::from_column(&r.refusal)
                .is_some_and(|f| version.is_some_and(|v| !v.refusal_policy.charges(&f)));
            !free && !unbilled
        })
        .collect()
}

fn charge_container(
    book: &PriceBook,
    group: &[ContainerRecord],
    period: &Period,
) -> Option<ChargedContainers> {
    let billable = billable(book, group);
    let first = billable.first()?;
    let day = crate::time::date_of(first.recorded_at);
    if !period.contains(day) {
        return None;
    }
    let version = book.version_at(day)?;
    // Union of [started_at, recorded_at] intervals, in microseconds.
    // (Sorted first, so each merge lands at the end of the union.)
    let mut intervals: Vec<(Micros, Micros)> = billable
        .iter()
        .filter_map(|r| r.started_at.map(|s| (s, r.recorded_at)))
        .collect();
    intervals.sort_unstable();
    let mut union = Vec::new();
    for interval in intervals {
        crate::time::merge_span(&mut union, interval);
    }
    let execution_seconds = crate::time::covered_seconds(&union);
    Some(ChargedContainers {
        account: first.account.clone(),
        day,
        containers: 1,
        execution_seconds,
        billed_seconds: execution_seconds.max(version.container_minimum_seconds),
        price_version: version.label(),
        hour_price: version.container_hour,
    })
}

/// Bucket key: the allowance period and its first day.
type Bucket = (AllowancePeriod, NaiveDate);

pub(crate) fn share_allowance(
    book: &PriceBook,
    containers: &[ChargedContainers],
) -> (Vec<FreeCredit>, Vec<AllowanceUse>) {
    // Billed seconds per bucket, account and day.
    let mut buckets: BTreeMap<Bucket, BTreeMap<&str, BTreeMap<NaiveDate, i64>>> = BTreeMap::new();
    for c in containers {
        let Some(v) = book.version_at(c.day) else {
            continue;
        };
        let start = match v.free_allowance_period {
            AllowancePeriod::Day => c.day,
            AllowancePeriod::Month => c.day.with_day(1).unwrap_or(c.day),
        };
        *buckets
            .entry((v.free_allowance_period, start))
            .or_default()
            .entry(c.account.as_str())
            .or_default()
            .entry(c.day)
            .or_default() += c.billed_seconds;
    }
    let mut credits = Vec::new();
    let mut uses = Vec::new();
    for ((period, start), accounts) in buckets {
        // The allowance of a bucket is set by the version in force when it begins.
        let Some(v) = book
            .version_at(start)
            .or_else(|| book.version_at(start.with_day(28).unwrap_or(start)))
        else {
            continue;
        };
        let allowance = (v.free_container_hours * Decimal::from(3600))
            .floor()
            .to_i64()
            .unwrap_or(i64::MAX);
        let billed: BTreeMap<&str, i64> = accounts
            .iter()
            .map(|(a, days)| (*a, days.values().sum()))
            .collect();
        let total: i64 = billed.values().sum();
        uses.push(AllowanceUse {
            period,
            start,
            allowance_seconds: allowance,
            billed_seconds: total,
        });
        let shares: Vec<(&str, i64)> = match v.free_allowance_scope {
            AllowanceScope::Account => billed
                .iter()
                .map(|(a, s)| (*a, (*s).min(allowance)))
                .collect(),
            AllowanceScope::Organization => largest_remainder(total.min(allowance), &billed),
        };
        for (account, seconds) in shares {
            let Some(days) = accounts.get(account) else {
                continue;
            };
            let days: Vec<(NaiveDate, i64)> = days.iter().map(|(d, s)| (*d, *s)).collect();
            for (day, seconds) in split_by_weight(seconds, &days) {
                if seconds > 0 {
                    credits.push(FreeCredit {
                        account: account.to_owned(),
                        day,
                        seconds,
                        price_version: v.label(),
                        hour_price: v.container_hour,
                    });
                }
            }
        }
    }
    (credits, uses)
}

/// Split `amount` whole seconds across accounts in proportion to their
/// weights so the parts add up exactly (ties: the name that sorts first).
pub fn largest_remainder<'a>(amount: i64, weights: &BTreeMap<&'a str, i64>) -> Vec<(&'a str, i64)> {
    let weights: Vec<(&str, i64)> = weights.iter().map(|(a, w)| (*a, *w)).collect();
    split_by_weight(amount, &weights)
}

/// Split `amount` whole units in proportion to the weights so the parts add
/// up exactly: floors first, then one more unit each to the largest
/// remainders (ties: the earlier entry). Nothing is split when the weights
/// sum to zero or the amount is not positive.
pub fn split_by_weight<K: Copy>(amount: i64, weights: &[(K, i64)]) -> Vec<(K, i64)> {
    let total: i128 = weights.iter().map(|&(_, w)| i128::from(w)).sum();
    if total <= 0 || amount <= 0 {
        return weights.iter().map(|&(k, _)| (k, 0)).collect();
    }
    let amount = i128::from(amount);
    let mut parts: Vec<(K, i128, i128)> = weights
        .iter()
        .map(|&(k, w)| {
            let exact = amount * i128::from(w);
            (k, exact / total, exact % total)
        })
        .collect();
    let mut left = amount - parts.iter().map(|p| p.1).sum::<i128>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // The sort is stable: ties keep the given order.
    order.sort_by(|&x, &y| {
        let rx = parts.get(x).map_or(0, |p| p.2);
        let ry = parts.get(y).map_or(0, |p| p.2);
        ry.cmp(&rx)
    });
    for i in order {
        if left == 0 {
            break;
        }
        if let Some(p) = parts.get_mut(i) {
            p.1 += 1;
            left -= 1;
        }
    }
    parts
        .into_iter()
        .map(|(k, n, _)| (k, i64::try_from(n).unwrap_or(i64::MAX)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_adds_up_and_breaks_ties_by_name() {
        let w: BTreeMap<&str, i64> = [("b", 1), ("a", 1), ("c", 1)].into_iter().collect();
        // 10 / 3 = 3 each, remainder 1 → to "a", the first name.
        assert_eq!(largest_remainder(10, &w), [("a", 4), ("b", 3), ("c", 3)]);
        let w: BTreeMap<&str, i64> = [("x", 300), ("y", 900)].into_iter().collect();
        // 1000 × 300/1200 = 250; 1000 × 900/1200 = 750: exact.
        assert_eq!(largest_remainder(1000, &w), [("x", 250), ("y", 750)]);
        let w: BTreeMap<&str, i64> = [("p", 2), ("q", 5)].into_iter().collect();
        // 10 × 2/7 = 2.857 → 2 r 6; 10 × 5/7 = 7.142 → 7 r 1: the extra second goes to p.
        assert_eq!(largest_remainder(10, &w), [("p", 3), ("q", 7)]);
    }
}
