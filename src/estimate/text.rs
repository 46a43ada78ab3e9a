//! Estimates as terminal tables.

use rust_decimal::Decimal;

use super::{Comparison, Estimate};
use crate::finance::usd;

/// Left-align the first column, right-align the others.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| {
                if c < 2 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Hours with at most two decimals, grouped like money.
fn hours(h: Decimal) -> String {
    usd(h).trim_start_matches('$').to_owned()
}

const ESTIMATE_COLUMNS: &str =
    "workload | model | tokens | web search | code execution | container-hours | total";
const COMPARISON_COLUMNS: &str = "model |  | tokens | web search | code execution | total";

/// A table's header row from its titles separated by `|`.
fn header(titles: &str) -> Vec<String> {
    titles.split('|').map(|t| t.trim().to_owned()).collect()
}

pub fn estimate(e: &Estimate) -> String {
    let mut rows = vec![header(ESTIMATE_COLUMNS)];
    for w in &e.workloads {
        rows.push(vec![
            w.name.clone(),
            w.model.clone(),
            usd(w.subtotals.tokens),
            usd(w.subtotals.web_search),
            usd(w.subtotals.code_execution),
            hours(w.container_hours),
            usd(w.total),
        ]);
    }
    let used: Decimal = e.workloads.iter().map(|w| w.container_hours).sum();
    rows.push(vec![
        "free allowance".into(),
        String::new(),
        String::new(),
        String::new(),
        usd(e.free_amount),
        format!("-{}", hours(e.free_container_hours)),
        String::new(),
    ]);
    rows.push(vec![
        "total".into(),
        String::new(),
        usd(e.subtotals.tokens),
        usd(e.subtotals.web_search),
        usd(e.subtotals.code_execution),
        hours(used - e.free_container_hours),
        usd(e.total),
    ]);
    let mut out = format!(
        "Estimate for {} days from {} (price-book version {})\n\n",
        e.days, e.at, e.price_version
    );
    out.push_str(&table(&rows));
    out.push_str(&format!(
        "\nContainer-hours: {} used, {} free of {} available in the allowance.\n",
        hours(used),
        hours(e.free_container_hours),
        hours(e.allowance_hours)
    ));
    out.push_str(&format!(
        "Monthly total (30 days at this rate): {}\n",
        usd(e.total * Decimal::from(30) / Decimal::from(e.days.max(1)))
    ));
    out
}

pub fn comparison(c: &Comparison) -> String {
    let mut rows = vec![header(COMPARISON_COLUMNS)];
    for m in &c.models {
        rows.push(vec![
            m.model.clone(),
            if m.model == c.cheapest {
                "cheapest".into()
            } else {
                String::new()
            },
            usd(m.subtotals.tokens),
            usd(m.subtotals.web_search),
            usd(m.subtotals.code_execution),
            usd(m.total),
        ]);
    }
    format!(
        "The same workloads for {} days from {} on each model\n\n{}",
        c.days,
        c.at,
        table(&rows)
    )
}
