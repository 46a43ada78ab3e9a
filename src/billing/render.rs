//! Invoices as JSON and CSV (docs/invoices.md).
//!
//! JSON carries money and quantities as decimal strings. CSV is RFC 4180
//! with the contract's header, one row per line, unpriced usage as rows with
//! an empty amount, and a last `total` row. Text cells that a spreadsheet
//! would run as a formula are prefixed with `'`; numbers are plain decimals
//! (never an exponent, never a thousands separator); hours are given to at
//! most 6 decimals.

use rust_decimal::Decimal;

use super::invoice::Invoice;

pub const CSV_HEADER: [&str; 13] = [
    "invoice_number",
    "account",
    "period",
    "line",
    "description",
    "model",
    "charge",
    "batch",
    "long_context",
    "quantity",
    "unit",
    "unit_price_usd",
    "amount_usd",
];

pub fn json(invoice: &Invoice) -> String {
    let mut s = serde_json::to_string_pretty(invoice).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// Neutralise spreadsheet formulas in a text cell.
pub fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// A decimal as a plain number: `Decimal`'s own formatting never uses an
/// exponent or a separator.
pub fn number_cell(d: Decimal) -> String {
    d.to_string()
}

/// Hours as a spreadsheet reads them. Hours are whole seconds ÷ 3600, which
/// terminates within 4 decimals or not at all: those that do not are rounded
/// to 6 decimals (to the 0.0036 s). The JSON keeps the exact value, and every
/// amount is computed from the seconds either way.
pub fn readable_hours(hours: Decimal) -> Decimal {
    hours
        .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// A line's quantity as a CSV cell: hours as [`readable_hours`], any other
/// unit exact.
pub fn quantity_cell(q: Decimal, unit: &str) -> String {
    if unit == "hour" {
        number_cell(readable_hours(q))
    } else {
        number_cell(q)
    }
}

/// The rows of one invoice (without the header), for `csv` and for the
/// all-accounts export.
pub fn csv_rows(invoice: &Invoice) -> Vec<[String; 13]> {
    let number = invoice.number.clone().unwrap_or_default();
    let head = |line: String| -> [String; 4] {
        [
            text_cell(&number),
            text_cell(&invoice.account),
            text_cell(&invoice.period),
            line,
        ]
    };
    let mut rows = Vec::new();
    for (i, l) in invoice.lines.iter().enumerate() {
        let [a, b, c, d] = head((i + 1).to_string());
        rows.push([
            a,
            b,
            c,
            d,
            text_cell(&l.description),
            text_cell(l.model.as_deref().unwrap_or_default()),
            l.charge.as_str().to_owned(),
            l.batch.to_string(),
            l.long_context.to_string(),
            quantity_cell(l.quantity, l.unit),
            l.unit.to_owned(),
            number_cell(l.unit_price),
            number_cell(l.amount),
        ]);
    }
    for u in &invoice.unpriced {
        let [a, b, c, d] = head(String::new());
        rows.push([
            a,
            b,
            c,
            d,
            text_cell(&format!(
                "{} unpriced usage: {} input, {} output, {} cache write 5m, {} cache write 1h, {} cache read tokens",
                u.model, u.input_tokens, u.output_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.cache_read_tokens
            )),
            text_cell(&u.model),
            "unpriced".to_owned(),
            String::new(),
            String::new(),
            u.records.to_string(),
            "record".to_owned(),
            String::new(),
            String::new(),
        ]);
    }
    let [a, b, c, d] = head(String::new());
    rows.push([
        a,
        b,
        c,
        d,
        "total".to_owned(),
        String::new(),
        "total".to_owned(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        number_cell(invoice.total),
    ]);
    rows
}

pub fn csv_document<'a>(invoices: impl IntoIterator<Item = &'a Invoice>) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let _ = w.write_record(CSV_HEADER);
    for invoice in invoices {
        for row in csv_rows(invoice) {
            let _ = w.write_record(&row);
        }
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

pub fn csv(invoice: &Invoice) -> String {
    csv_document([invoice])
}
