//! Finance commands: `tally budget`, `tally export --format focus`,
//! `tally reconcile`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use rust_decimal::Decimal;

use super::open_store;
use crate::billing::Period;
use crate::billing::daily::period_costs;
use crate::finance::{accounting, budget, focus, reconcile, usd};

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set an account's monthly budget in USD.
    Set {
        #[arg(long)]
        account: String,
        /// USD per month, e.g. 500 or 1234.50.
        #[arg(long)]
        monthly: String,
    },
    /// Budgets with month-to-date spend, forecast and share used.
    List {
        /// Period (default: the current month).
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Alerts recorded (50/80/100 % of a budget), optionally for one period.
    Alerts {
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check this month's spend against budgets, and credit balances against
    /// their low-balance thresholds, now: record crossed thresholds and POST
    /// undelivered alerts and invoice.finalized events to the webhook (for cron).
    Check {
        #[arg(long, env = "TALLY_ALERT_WEBHOOK")]
        webhook: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// FinOps FOCUS cost-and-usage rows (every charge, by day).
    Focus,
    /// The period's finalized invoices in QuickBooks Online's invoice import layout.
    Quickbooks,
    /// The period's finalized invoices in Xero's sales invoice import layout.
    Xero,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[arg(long)]
    pub period: String,
    /// Output file (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// quickbooks, xero: how dates are written (default: mdy for
    /// QuickBooks, dmy for Xero).
    #[arg(long, value_enum)]
    pub date_format: Option<accounting::DateFormat>,
    /// xero: the revenue account code of every line.
    #[arg(long, default_value = "200")]
    pub account_code: String,
    /// xero: the tax rate (its name in Xero) of every line: a zero rate,
    /// since the invoice's own tax line is exported as a line.
    #[arg(long, default_value = "Tax Exempt")]
    pub tax_type: String,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Cost report pages exported from Anthropic's Admin API (JSON).
    #[arg(long)]
    pub cost_report: PathBuf,
    #[arg(long)]
    pub period: String,
    /// Largest difference per day and cost type still counted as a match, in USD.
    #[arg(long, default_value = "0.01")]
    pub tolerance: String,
    #[arg(long)]
    pub json: bool,
}

fn period_arg(p: &str) -> Result<Period> {
    Period::parse(p).map_err(|m| anyhow!("--period: {m}"))
}

fn current_or(p: Option<&str>) -> Result<Period> {
    match p {
        Some(p) => period_arg(p),
        None => Ok(Period::of_day(chrono::Utc::now().date_naive())),
    }
}

pub async fn budget_cmd(database: &str, cmd: BudgetCommand) -> Result<ExitCode> {
    let store = open_store(database).await?;
    let store = store.as_ref();
    match cmd {
        BudgetCommand::Set { account, monthly } => {
            crate::record::validate_account(&account)
                .map_err(|m| anyhow!("--account {account:?} {m}"))?;
            let amount = budget::parse_amount(&monthly).map_err(|m| anyhow!("--monthly: {m}"))?;
            store.set_budget(&account, amount).await?;
            println!("budget of {account}: {} per month", usd(amount));
        }
        BudgetCommand::List { period, json } => {
            let period = current_or(period.as_deref())?;
            let book = crate::pricing::current_book(store).await?;
            let costs = period_costs(store, &book, period, None, &[]).await?;
            let statuses = budget::statuses(store, &costs, chrono::Utc::now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                println!(
                    "{:<24} {:>14} {:>14} {:>8} {:>16}",
                    "account", "budget", "to date", "used", "month-end"
                );
                for s in statuses {
                    println!(
                        "{:<24} {:>14} {:>14} {:>8} {:>16}",
                        s.account,
                        s.monthly_budget_usd.map(usd).unwrap_or_else(|| "-".into()),
                        usd(s.month_to_date_usd),
                        s.share_used
                            .map(|u| format!("{}%", (u * Decimal::ONE_HUNDRED).round_dp(1)))
                            .unwrap_or_else(|| "-".into()),
                        usd(s.forecast_usd)
                    );
                }
            }
        }
        BudgetCommand::Alerts { period, json } => {
            let period = period.as_deref().map(period_arg).transpose()?;
            let alerts: Vec<budget::AlertView> = store
                .alerts(period.map(|p| p.to_string()).as_deref(), false)
                .await?
                .iter()
                .map(budget::AlertView::from)
                .collect();
            let low: Vec<crate::finance::credits::CreditAlertView> = store
                .credit_alerts(false)
                .await?
                .iter()
                .filter(|a| {
                    period.is_none_or(|p| Period::of_day(crate::time::date_of(a.crossed_at)) == p)
                })
                .map(crate::finance::credits::CreditAlertView::from)
                .collect();
            if json {
                let mut all: Vec<serde_json::Value> = Vec::new();
                for a in &alerts {
                    all.push(serde_json::to_value(a)?);
                }
                for a in &low {
                    all.push(serde_json::to_value(a)?);
                }
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for a in low.iter() {
                    println!(
                        "{} credit balance {} under {} (crossed at {}, {} granted in all){}",
                        a.account,
                        usd(a.balance_usd),
                        usd(a.threshold_usd),
                        a.crossed_at,
                        usd(a.funded_usd),
                        if a.delivered { ", delivered" } else { "" }
                    );
                }
                for a in alerts {
                    println!(
                        "{} {} {}% of {} crossed at {} (spend {}){}",
                        a.period,
                        a.account,
                        a.threshold_percent,
                        usd(a.budget_usd),
                        a.crossed_at,
                        usd(a.spend_usd),
                        if a.delivered { ", delivered" } else { "" }
                    );
                }
            }
        }
        BudgetCommand::Check { webhook } => {
            let now = chrono::Utc::now();
            let book = crate::pricing::current_book(store).await?;
            let costs =
                period_costs(store, &book, Period::of_day(now.date_naive()), None, &[]).await?;
            let new = budget::check(store, &costs, now).await?;
            let low = crate::finance::credits::check(
                store,
                &crate::finance::credits::Figures::Fresh(&book),
                now,
            )
            .await?;
            println!("{} new alert(s)", new.len() + low.len());
            if let Some(url) = webhook.filter(|u| !u.is_empty()) {
                let webhook = crate::finance::webhook::Webhook::new(&url)?;
                let sent = budget::deliver(store, &webhook).await?
                    + crate::finance::credits::deliver(store, &webhook).await?
                    + crate::finance::events::deliver(store, &webhook).await?;
                println!("{sent} alert(s) delivered to the webhook");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(database: &str, args: ExportArgs) -> Result<ExitCode> {
    let period = period_arg(&args.period)?;
    let store = open_store(database).await?;
    let product = match args.format {
        ExportFormat::Focus => None,
        ExportFormat::Quickbooks => Some(accounting::Product::QuickBooks),
        ExportFormat::Xero => Some(accounting::Product::Xero),
    };
    if let Some(product) = product {
        let mut options = accounting::ExportOptions::defaults(product);
        options.dates = args.date_format.unwrap_or(options.dates);
        options.account_code = args.account_code;
        options.tax_type = args.tax_type;
        let (csv, invoices) =
            accounting::export(store.as_ref(), product, period, None, &options).await?;
        if invoices == 0 {
            eprintln!(
                "warning: no finalized invoice in {period}: only finalized invoices are exported (tally invoice --finalize)"
            );
        }
        match &args.out {
            Some(path) => {
                std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(csv.as_bytes())?;
                out.flush()?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let costs = focus::costs_for_export(store.as_ref(), &book, period, None).await?;
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            focus::write(&costs, None, std::io::BufWriter::new(file))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            focus::write(&costs, None, &mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile_cmd(database: &str, args: ReconcileArgs) -> Result<ExitCode> {
    let period = period_arg(&args.period)?;
    let tolerance: Decimal = args
        .tolerance
        .parse()
        .ok()
        .filter(|t: &Decimal| !t.is_sign_negative())
        .ok_or_else(|| {
            anyhow!(
                "--tolerance {:?}: expected a non-negative USD amount",
                args.tolerance
            )
        })?;
    let text = std::fs::read_to_string(&args.cost_report)
        .with_context(|| format!("reading {}", args.cost_report.display()))?;
    let anthropic =
        reconcile::read_pages(&text).map_err(|m| anyhow!("{}: {m}", args.cost_report.display()))?;
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let costs = period_costs(store.as_ref(), &book, period, None, &[]).await?;
    let rows = reconcile::compare(
        period,
        &reconcile::tally_figures(&costs),
        &anthropic,
        tolerance,
    );
    let mismatches = rows.iter().filter(|r| !r.within_tolerance).count();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "period": period.to_string(), "tolerance_usd": tolerance,
                "rows": rows, "mismatches": mismatches}))?
        );
    } else {
        println!(
            "{:<10}  {:<15} {:>14} {:>14} {:>12}",
            "day", "cost type", "tally", "anthropic", "difference"
        );
        for r in &rows {
            println!(
                "{:<10}  {:<15} {:>14} {:>14} {:>12}{}",
                r.day,
                r.cost_type,
                usd(r.tally_usd),
                usd(r.anthropic_usd),
                r.difference_usd,
                if r.within_tolerance { "" } else { "  ✗" }
            );
        }
        println!(
            "{mismatches} of {} day/cost-type figures differ by more than {}",
            rows.len(),
            usd(tolerance)
        );
    }
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
