//! The finance dashboard at `/`: one server-rendered HTML page with inline
//! CSS and SVG charts. No script, no external asset: it works offline, in
//! any browser, and prints. Every figure is read from the period's
//! [`PeriodCosts`] (the invoices' own numbers).

pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;

use crate::billing::daily::{AccountCosts, PeriodCosts};
use crate::billing::{Category, Charge, Period};
use crate::finance::budget::BudgetStatus;
use crate::finance::margins::{self, Margin};
use crate::finance::usd;
use crate::pricing::AllowancePeriod;

const STYLE: &str = include_str!("style.css");

pub use crate::html::esc;

/// What one page shows.
pub struct View<'a> {
    pub costs: &'a PeriodCosts,
    /// The accounts the caller may see (all for the admin).
    pub accounts: Vec<&'a AccountCosts>,
    pub budgets: Vec<BudgetStatus>,
    /// Organization-wide panels (the free allowance) for the admin only,
    /// and only unfiltered.
    pub organization: bool,
    pub computed_at: String,
    pub filters: Filters,
    /// The cost-by-tag panel, when asked for.
    pub by_tag: Option<TagCosts>,
    /// The margins panel (cost, price, margin per account): for the admin,
    /// when an account has a plan.
    pub margins: bool,
    /// The months that hold the caller's records, oldest first (the picker
    /// lists them).
    pub periods: Vec<Period>,
}

/// A tag key, and each of its values' cost (`None`: records without it).
pub type TagCosts = (String, Vec<(Option<String>, Decimal)>);

/// The dashboard's filters as asked (to fill the form and say what is shown).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub workspace: Option<String>,
    /// `KEY:VALUE`.
    pub tag: Option<String>,
    pub tag_key: Option<String>,
    /// In words, one per filter in force.
    pub described: Vec<String>,
}

fn category_label(c: Category) -> &'static str {
    match c {
        Category::Tokens => "tokens",
        Category::CodeExecution => "code execution",
        Category::WebSearch => "web search",
        Category::Adjustment => "adjustments",
        Category::Commitment => "minimum commitment",
        Category::Credit => "prepaid credit",
        Category::Tax => "tax",
    }
}

/// Render the page.
pub fn render(v: &View) -> String {
    let period = v.costs.period;
    // Billed, before prepaid credit (which is how it is paid, not what it cost
    // the account): the credit drawn is its own card.
    let total: Decimal = crate::billing::cents(
        v.accounts
            .iter()
            .map(|a| a.invoice.total_before_credit())
            .sum(),
    );
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>tally — {period}</title><style>{STYLE}</style></head><body><header><h1>tally</h1>"#
    );
    picker(&mut h, period, &v.periods);
    filter_form(&mut h, period, &v.filters);
    h.push_str("</header><main>");
    if !v.filters.described.is_empty() {
        let _ = write!(
            h,
            r#"<p class="filtered" id="filtered">Showing only {}: each figure is its share of the invoice lines, to the cent. Adjustments, record counts and unpriced usage are not attributed and are left out. <a href="/?period={period}">Show everything</a></p>"#,
            esc(&v.filters.described.join(" and "))
        );
    }

    // Headline figures.
    let sum = |cat: Category| -> Decimal {
        v.accounts
            .iter()
            .flat_map(|a| a.invoice.lines.iter())
            .filter(|l| l.charge.category() == cat)
            .map(|l| l.amount)
            .sum()
    };
    let _ = write!(
        h,
        r#"<section class="cards"><div class="card total"><div class="k">Total {period}</div><div class="v" id="total" data-usd="{total}">{}</div></div>"#,
        usd(total)
    );
    for cat in [
        Category::Tokens,
        Category::CodeExecution,
        Category::WebSearch,
    ] {
        let _ = write!(
            h,
            r#"<div class="card"><div class="k">{}</div><div class="v">{}</div></div>"#,
            category_label(cat),
            usd(sum(cat))
        );
    }
    for cat in [
        Category::Adjustment,
        Category::Commitment,
        Category::Credit,
        Category::Tax,
    ] {
        let amount = sum(cat);
        if !amount.is_zero() {
            let _ = write!(
                h,
                r#"<div class="card"><div class="k">{}</div><div class="v">{}</div></div>"#,
                category_label(cat),
                usd(amount)
            );
        }
    }
    let records: i64 = v.accounts.iter().map(|a| a.invoice.records).sum();
    let _ = write!(
        h,
        r#"<div class="card"><div class="k">records · accounts</div><div class="v small">{records} · {}</div></div>"#,
        v.accounts.len()
    );
    let refusals: i64 = v.accounts.iter().map(|a| a.invoice.unbilled_refusals).sum();
    if refusals > 0 {
        let _ = write!(
            h,
            r#"<div class="card" title="refusals before any output that the price book's refusal policy does not charge"><div class="k">refusals not charged</div><div class="v small" id="unbilled-refusals">{refusals}</div></div>"#
        );
    }
    h.push_str("</section>");

    warnings(&mut h, v);
    daily_chart(&mut h, v);
    by_model(&mut h, v);
    if let Some((key, totals)) = &v.by_tag {
        by_tag(&mut h, key, totals);
    }
    accounts_table(&mut h, v);
    if v.margins {
        margins(&mut h, v);
    }
    if v.organization {
        allowance(&mut h, v.costs);
    }
    downloads(&mut h, period);
    let _ = write!(
        h,
        r#"</main><footer>Figures as of {} (ledger record #{}). Amounts in USD; each day's figure is its share of the invoice lines, so every sum matches the invoices to the cent.</footer></body></html>"#,
        esc(&v.computed_at),
        v.costs.max_seq
    );
    h
}

/// Filters by workspace and tag, and the key of the cost-by-tag panel.
fn filter_form(h: &mut String, period: Period, f: &Filters) {
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let _ = write!(
        h,
        r#"<form class="picker filters" method="get" action="/"><input type="hidden" name="period" value="{period}"><input name="workspace" placeholder="workspace" aria-label="workspace" value="{}"><input name="tag" placeholder="tag key:value" aria-label="tag" value="{}"><input name="tag_key" placeholder="cost by tag key" aria-label="cost by tag key" value="{}"><button type="submit">Filter</button></form>"#,
        value(&f.workspace),
        value(&f.tag),
        value(&f.tag_key)
    );
}

/// Cost by the values of one tag key, largest first, records without it last.
fn by_tag(h: &mut String, key: &str, totals: &[(Option<String>, Decimal)]) {
    let mut rows: Vec<&(Option<String>, Decimal)> = totals.iter().collect();
    rows.sort_by(|a, b| {
        (a.0.is_none(), std::cmp::Reverse(a.1), &a.0).cmp(&(
            b.0.is_none(),
            std::cmp::Reverse(b.1),
            &b.0,
        ))
    });
    let top = rows.iter().map(|r| r.1).max().unwrap_or_default();
    let _ = write!(
        h,
        r#"<section id="by-tag"><h2>Cost by tag <code>{}</code></h2><table><thead><tr><th>value</th><th class="n">cost</th><th></th></tr></thead><tbody>"#,
        esc(key)
    );
    for (value, total) in rows {
        let name = match value {
            Some(v) => esc(v),
            None => "(no tag)".to_owned(),
        };
        let width = if top.is_zero() {
            Decimal::ZERO
        } else {
            (*total * Decimal::ONE_HUNDRED / top).round_dp(1)
        };
        let _ = write!(
            h,
            r#"<tr><td>{name}</td><td class="n" data-usd="{total}">{}</td><td class="bar"><span style="width:{width}%"></span></td></tr>"#,
            usd(*total)
        );
    }
    h.push_str("</tbody></table></section>");
}

/// Previous and next month, and a list of the months that hold records
/// (newest first; the month shown is listed even when it holds none).
fn picker(h: &mut String, period: Period, periods: &[Period]) {
    let prev = Period::of_day(period.first_day() - Days::new(1));
    let next = period.next();
    let _ = write!(
        h,
        r#"<form class="picker" method="get" action="/"><a href="/?period={prev}" title="previous month">‹ {prev}</a><select name="period" id="period" aria-label="period">"#
    );
    let mut listed: Vec<Period> = periods.to_vec();
    if !listed.contains(&period) {
        listed.push(period);
    }
    listed.sort();
    for p in listed.iter().rev() {
        let words = p.first_day().format("%B %Y");
        let (selected, note) = match (*p == period, periods.contains(p)) {
            (true, true) => (" selected", ""),
            (true, false) => (" selected", " (no records)"),
            _ => ("", ""),
        };
        let _ = write!(h, r#"<option value="{p}"{selected}>{words}{note}</option>"#);
    }
    let _ = write!(
        h,
        r#"</select><button type="submit">Show</button><a href="/?period={next}" title="next month">{next} ›</a></form>"#
    );
}

fn warnings(h: &mut String, v: &View) {
    let mut items = Vec::new();
    // Unpriced usage, one line per model (however many accounts have it).
    let mut unpriced: BTreeMap<&str, (i64, Vec<&str>)> = BTreeMap::new();
    for a in &v.accounts {
        for u in &a.invoice.unpriced {
            let e = unpriced.entry(u.model.as_str()).or_default();
            e.0 += u.records;
            e.1.push(a.invoice.account.as_str());
        }
    }
    for (model, (records, accounts)) in unpriced {
        let mut names: Vec<String> = accounts.iter().take(5).map(|a| esc(a)).collect();
        if accounts.len() > 5 {
            names.push(format!("{} more", accounts.len() - 5));
        }
        items.push(format!(
            "{records} records of <code>{}</code> have no price in the price book and are not in the totals (accounts: {}). Import prices with <code>tally prices import</code>.",
            esc(model),
            names.join(", ")
        ));
    }
    for a in &v.accounts {
        if !a.late.is_zero() {
            items.push(format!(
                "<b>{}</b>: {} of usage was recorded after invoice {} was finalized; it is billed as an adjustment on the account's next open period.",
                esc(&a.invoice.account),
                usd(a.late),
                esc(a.number.as_deref().unwrap_or(""))
            ));
        }
        for l in a
            .invoice
            .lines
            .iter()
            .filter(|l| l.charge == Charge::Adjustment)
        {
            items.push(format!(
                "<b>{}</b>: {} — {}.",
                esc(&a.invoice.account),
                esc(&l.description),
                usd(l.amount)
            ));
        }
    }
    if items.is_empty() {
        return;
    }
    h.push_str(r#"<section class="warnings" id="warnings"><h2>Needs attention</h2><ul>"#);
    for i in items {
        let _ = write!(h, "<li>{i}</li>");
    }
    h.push_str("</ul></section>");
}

fn daily_chart(h: &mut String, v: &View) {
    let period = v.costs.period;
    let series = [
        Category::Tokens,
        Category::CodeExecution,
        Category::WebSearch,
    ];
    let mut per_day: BTreeMap<NaiveDate, [Decimal; 3]> = BTreeMap::new();
    let mut day = period.first_day();
    while day < period.end_day() {
        per_day.insert(day, [Decimal::ZERO; 3]);
        day = day + Days::new(1);
    }
    for cost in v.accounts.iter().flat_map(|a| a.days.iter()) {
        if let (Some(slot), Some(i)) = (
            per_day.get_mut(&cost.day),
            series.iter().position(|c| *c == cost.key.charge.category()),
        ) && let Some(x) = slot.get_mut(i)
        {
            *x += cost.amount;
        }
    }
    let columns: Vec<svg::Column> = per_day
        .into_iter()
        .map(|(d, values)| svg::Column {
            label: d.day().to_string(),
            values: values.to_vec(),
        })
        .collect();
    let labels: Vec<&str> = series.iter().map(|c| category_label(*c)).collect();
    h.push_str(r#"<section><h2>Cost per day</h2><p class="legend">"#);
    for (i, l) in labels.iter().enumerate() {
        let _ = write!(
            h,
            r#"<span><i style="background:{}"></i>{l}</span>"#,
            svg::COLOURS[i]
        );
    }
    h.push_str("</p>");
    h.push_str(&svg::stacked_columns(
        &columns,
        &labels,
        "cost per day by category",
    ));
    h.push_str("</section>");
}

fn by_model(h: &mut String, v: &View) {
    let mut models: BTreeMap<String, Decimal> = BTreeMap::new();
    for cost in v.accounts.iter().flat_map(|a| a.days.iter()) {
        let name = match (&cost.key.model, cost.key.charge.category()) {
            (Some(m), _) => m.clone(),
            (None, Category::WebSearch) => "web search".into(),
            (None, Category::CodeExecution) => "code execution".into(),
            (None, _) => continue,
        };
        *models.entry(name).or_default() += cost.amount;
    }
    let mut rows: Vec<(String, Decimal)> = models.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(15);
    h.push_str("<section><h2>Cost by model</h2>");
    if rows.is_empty() {
        h.push_str(r#"<p class="empty">No usage in this period.</p>"#);
    } else {
        h.push_str(&svg::bars(&rows, "cost by model"));
    }
    h.push_str("</section>");
}

fn accounts_table(h: &mut String, v: &View) {
    let period = v.costs.period;
    let mut ranked: Vec<&&AccountCosts> = v.accounts.iter().collect();
    ranked.sort_by(|a, b| {
        b.invoice
            .total_before_credit()
            .cmp(&a.invoice.total_before_credit())
            .then_with(|| a.invoice.account.cmp(&b.invoice.account))
    });
    h.push_str(r#"<section><h2>Accounts by cost</h2><table id="accounts"><thead><tr><th>#</th><th>account</th><th class="n">tokens</th><th class="n">code execution</th><th class="n">web search</th><th class="n">total</th><th class="n">budget</th><th class="n">used</th><th class="n">month-end forecast</th><th>invoice</th></tr></thead><tbody>"#);
    for (i, a) in ranked.iter().enumerate() {
        let inv = &a.invoice;
        let budget = v.budgets.iter().find(|b| b.account == inv.account);
        let (budget_cell, used_cell, forecast_cell) = match budget {
            Some(b) => (
                b.monthly_budget_usd.map(usd).unwrap_or_default(),
                b.share_used
                    .map(|s| {
                        let pct = (s * Decimal::ONE_HUNDRED).round_dp(1);
                        let class = if s >= Decimal::ONE {
                            "over"
                        } else if s >= Decimal::new(8, 1) {
                            "near"
                        } else {
                            "ok"
                        };
                        format!(r#"<span class="{class}">{pct}%</span>"#)
                    })
                    .unwrap_or_default(),
                // A forecast past the budget is flagged before the budget is.
                match b.monthly_budget_usd {
                    Some(budget) if b.forecast_usd > budget => format!(
                        r#"<span class="over" title="on course to pass the budget">{}</span>"#,
                        usd(b.forecast_usd)
                    ),
                    _ => usd(b.forecast_usd),
                },
            ),
            None => Default::default(),
        };
        // An empty cell reads as missing data; a dash says "no budget".
        let dash = |cell: String| {
            if cell.is_empty() {
                "—".to_owned()
            } else {
                cell
            }
        };
        let (budget_cell, used_cell, forecast_cell) =
            (dash(budget_cell), dash(used_cell), dash(forecast_cell));
        let status = match &a.number {
            Some(n) => esc(n),
            None => "draft".to_owned(),
        };
        let acct = esc(&inv.account);
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{acct}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n"><b>{}</b></td><td class="n">{budget_cell}</td><td class="n">{used_cell}</td><td class="n">{forecast_cell}</td><td>{status} · <a href="/v1/accounts/{acct}/invoices/{period}">JSON</a> · <a href="/v1/accounts/{acct}/invoices/{period}?format=csv">CSV</a></td></tr>"#,
            i + 1,
            usd(inv.subtotals.tokens),
            usd(inv.subtotals.code_execution),
            usd(inv.subtotals.web_search),
            usd(inv.total_before_credit()),
        );
    }
    if ranked.is_empty() {
        h.push_str(r#"<tr><td colspan="10" class="empty">No usage in this period.</td></tr>"#);
    }
    h.push_str("</tbody></table></section>");
}

/// Each account's usage at cost and at its price, and the margin between
/// (usage lines only: no minimum commitment, adjustment, credit or tax).
fn margins(h: &mut String, v: &View) {
    h.push_str(r#"<section><h2>Margins</h2><table id="margins"><thead><tr><th>account</th><th>plan</th><th class="n">cost</th><th class="n">price</th><th class="n">margin</th><th class="n">margin %</th></tr></thead><tbody>"#);
    let percent = |m: &Margin| {
        m.margin_percent
            .map(|p| format!("{p}%"))
            .unwrap_or_default()
    };
    let mut rows = Vec::with_capacity(v.accounts.len());
    for a in &v.accounts {
        let (cost, price) = a.usage_cost_and_price();
        let m = Margin::of(&a.invoice.account, cost, price);
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&m.account),
            if a.plan.is_some() { "plan" } else { "at cost" },
            usd(m.cost),
            usd(m.price),
            usd(m.margin),
            percent(&m),
        );
        rows.push(m);
    }
    let all = margins::total(&rows);
    let _ = write!(
        h,
        r#"</tbody><tfoot><tr><th>all accounts</th><th></th><th class="n">{}</th><th class="n">{}</th><th class="n" id="margin-total">{}</th><th class="n">{}</th></tr></tfoot></table></section>"#,
        usd(all.cost),
        usd(all.price),
        usd(all.margin),
        percent(&all),
    );
}

/// Hours as people say them: at most 2 decimals, no trailing zeros ("0.17
/// h", "50 h").
fn hours(seconds: i64) -> String {
    let h = (Decimal::from(seconds) / Decimal::from(3600))
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    format!("{} h", crate::documents::quantity(h, "hour"))
}

fn allowance(h: &mut String, costs: &PeriodCosts) {
    let buckets: Vec<_> = costs
        .allowance
        .iter()
        .filter(|u| costs.period.contains(u.start) || u.period == AllowancePeriod::Month)
        .collect();
    h.push_str(r#"<section id="allowance"><h2>Code-execution container hours against the free allowance</h2>"#);
    if buckets.is_empty() {
        h.push_str(r#"<p class="empty">No container time in this period.</p></section>"#);
        return;
    }
    let day = |d: NaiveDate| d.format("%-d %B").to_string();
    let charged = |u: &crate::billing::containers::AllowanceUse| {
        (u.billed_seconds - u.allowance_seconds).max(0)
    };
    // A month's allowance (one bucket), then the days' (one bucket a day).
    let mut sentences = Vec::new();
    let mut meter = None;
    for u in buckets
        .iter()
        .filter(|u| u.period == AllowancePeriod::Month)
    {
        sentences.push(format!(
            "{} used of {} free in {} (organization-wide); {} charged.",
            hours(u.billed_seconds),
            hours(u.allowance_seconds),
            u.start.format("%B %Y"),
            hours(charged(u)),
        ));
        meter = Some((u.billed_seconds, u.allowance_seconds));
    }
    let days: Vec<_> = buckets
        .iter()
        .filter(|u| u.period == AllowancePeriod::Day)
        .collect();
    if let Some(busiest) = days.iter().max_by(|a, b| {
        a.billed_seconds
            .cmp(&b.billed_seconds)
            .then(b.start.cmp(&a.start))
    }) {
        let free_each_day = hours(busiest.allowance_seconds);
        if days.len() == 1 {
            sentences.push(format!(
                "{} used of {free_each_day} free on {} (the allowance is per UTC day, organization-wide); {} charged.",
                hours(busiest.billed_seconds),
                day(busiest.start),
                hours(charged(busiest)),
            ));
        } else {
            let used: i64 = days.iter().map(|u| u.billed_seconds).sum();
            let over: i64 = days.iter().map(|u| charged(u)).sum();
            sentences.push(format!(
                "{free_each_day} free each UTC day (organization-wide). Busiest day: {} used of {free_each_day} free on {}. In all: {} used on {} days, {} charged beyond the free hours.",
                hours(busiest.billed_seconds),
                day(busiest.start),
                hours(used),
                days.len(),
                hours(over),
            ));
        }
        meter = meter.or(Some((busiest.billed_seconds, busiest.allowance_seconds)));
    }
    let _ = write!(
        h,
        r#"<p id="allowance-use">{}</p>"#,
        esc(&sentences.join(" "))
    );
    if let Some((used, allowance)) = meter {
        let hours = |s: i64| Decimal::from(s) / Decimal::from(3600);
        h.push_str(&svg::meter(
            hours(used),
            hours(allowance),
            "container hours against the allowance",
        ));
    }
    h.push_str("</section>");
}

fn downloads(h: &mut String, period: Period) {
    let start = period.first_day();
    let end = period.end_day();
    let _ = write!(
        h,
        r#"<section class="downloads"><h2>Downloads</h2><ul><li><a href="/v1/invoices?period={period}&amp;format=csv">Invoices, all accounts (CSV)</a></li><li><a href="/v1/exports/focus?period={period}">FOCUS cost and usage (CSV)</a></li><li><a href="/v1/cost_report?starting_at={start}T00:00:00Z&amp;ending_at={end}T00:00:00Z&amp;limit=31&amp;group_by[]=account&amp;group_by[]=description">Cost report (JSON)</a></li></ul></section>"#
    );
}
