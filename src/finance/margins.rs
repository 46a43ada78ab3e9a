//! Margins (docs/plans.md): per account, what the period's usage cost (the price
//! book's prices), what it is priced at (the account's plan; the cost
//! without one), and the difference. Usage lines only, each rounded as on
//! the invoice: no minimum commitment, adjustment (another period's usage),
//! credit or tax. So `price` is the sum of the invoice's usage lines, and of
//! the cost report's price view over the period's days.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::billing::cents;
use crate::billing::daily::PeriodCosts;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Margin {
    pub account: String,
    pub cost: Decimal,
    pub price: Decimal,
    pub margin: Decimal,
    /// Margin ÷ price, in percent to one decimal (none when the price is 0).
    pub margin_percent: Option<Decimal>,
}

impl Margin {
    pub fn of(account: &str, cost: Decimal, price: Decimal) -> Margin {
        let (cost, price) = (cents(cost), cents(price));
        let margin = price - cost;
        Margin {
            account: account.to_owned(),
            cost,
            price,
            margin,
            margin_percent: (!price.is_zero()).then(|| {
                let mut p = (margin * Decimal::ONE_HUNDRED / price).round_dp(1);
                p.rescale(1);
                p
            }),
        }
    }
}

/// Every account's margin in the period, by account.
pub fn of_period(costs: &PeriodCosts) -> Vec<Margin> {
    costs
        .accounts
        .iter()
        .map(|a| {
            let (cost, price) = a.usage_cost_and_price();
            Margin::of(&a.invoice.account, cost, price)
        })
        .collect()
}

/// The sum of margins (as one row named "all accounts").
pub fn total(rows: &[Margin]) -> Margin {
    let cost = rows.iter().map(|r| r.cost).sum();
    let price = rows.iter().map(|r| r.price).sum();
    Margin::of("all accounts", cost, price)
}
