//! Adjustments: usage recorded after a period's invoice was finalized is
//! billed on the account's next open period, as the difference between what
//! the ledger bills for that period now and what was billed then.

use rust_decimal::Decimal;

use super::BillingError;
use super::containers;
use super::period::Period;
use super::rating::{Charge, Line, LineCost};
use super::sums::{Cutoff, PeriodData};
use crate::pricing::PriceBook;
use crate::store::Store;

/// Adjustment lines on `period` for earlier finalized periods of the account
/// whose next open period this is: what the ledger up to `max_seq` bills for
/// them, minus what was already billed (as of the last finalization that
/// covered them).
pub(super) async fn adjustments_for(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    max_seq: i64,
) -> Result<Vec<Line>, BillingError> {
    let finalized: Vec<(Period, i64)> = store
        .finalized_periods(account)
        .await?
        .into_iter()
        .filter_map(|(p, cutoff)| Period::parse(&p).ok().map(|p| (p, cutoff)))
        .collect();
    let is_final = |p: Period| finalized.iter().any(|(f, _)| *f == p);
    if is_final(period) {
        return Ok(Vec::new());
    }
    let mut lines = Vec::new();
    for &(late, _) in finalized.iter().filter(|(p, _)| *p < period) {
        // This period must be the first open one after `late`.
        let mut next = late.next();
        while next < period && is_final(next) {
            next = next.next();
        }
        if next != period {
            continue;
        }
        // Billed so far for `late`: up to the newest cutoff among the finalized
        // invoices from `late` up to (not including) this period.
        let billed_to = finalized
            .iter()
            .filter(|(p, _)| *p >= late && *p < period)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0);
        if billed_to >= max_seq {
            continue;
        }
        // Nothing recorded for that period (or for containers reaching into
        // the next month) since: no adjustment, and no need to read records.
        let (from, to) = late.bounds();
        let first_day = crate::time::day_number(from);
        let end_day = crate::time::day_number(to + containers::CONTAINER_LIFETIME_MICROS);
        if store.newest_seq_in_days(first_day, end_day).await? <= billed_to {
            continue;
        }
        let before = charges_total(store, book, account, late, billed_to).await?;
        let now = charges_total(store, book, account, late, max_seq).await?;
        let (exact, amount) = (now.0 - before.0, now.1 - before.1);
        let (cost_exact, cost) = (now.2 - before.2, now.3 - before.3);
        if exact.is_zero() && amount.is_zero() && cost_exact.is_zero() && cost.is_zero() {
            continue;
        }
        let description =
            format!("adjustment for {late}: usage recorded after its invoice was finalized");
        lines.push(Line {
            amount_exact: exact.normalize(),
            cost: LineCost {
                unit_price: cost,
                amount_exact: cost_exact.normalize(),
                amount: cost,
            },
            ..Line::flat(Charge::Adjustment, description, late.to_string(), amount)
        });
    }
    Ok(lines)
}

/// What one account's charges in a period came to as of `max_seq`, the
/// minimum commitment included: (exact, rounded) price, then (exact,
/// rounded) cost. At the account's plan as it is now, both times, so an
/// adjustment prices the late usage only (never a repricing of the rest).
async fn charges_total(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    max_seq: i64,
) -> Result<(Decimal, Decimal, Decimal, Decimal), BillingError> {
    let inv = PeriodData::load(
        store,
        book,
        period,
        Cutoff::AsOf(max_seq),
        Some(account),
        &[],
    )
    .await?
    .charges(book, account, period);
    let cost_exact = inv.lines.iter().map(|l| l.cost.amount_exact).sum();
    let cost = inv.lines.iter().map(|l| l.cost.amount).sum();
    Ok((
        inv.lines.iter().map(|l| l.amount_exact).sum(),
        inv.total,
        cost_exact,
        cost,
    ))
}
