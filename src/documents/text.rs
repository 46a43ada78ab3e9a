//! An invoice as a plain-text table for a terminal (`tally invoice --format
//! text`): the same [`Document`] the HTML and PDF print, in columns sized to
//! their widest cell. Not frozen: it is a view of the invoice's JSON, which is.

use std::fmt::Write;

use super::{Document, usd};

const INDENT: &str = "  ";
const GAP: &str = "  ";
/// Notes are wrapped to a terminal's usual width.
const NOTE_WIDTH: usize = 80;

pub fn render(doc: &Document) -> String {
    let clean = plain(doc);
    let doc = &clean;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} for {}, {}",
        doc.title(),
        doc.account,
        doc.period_words()
    );
    let dates: Vec<String> = doc
        .facts()
        .into_iter()
        .filter(|(label, _)| label.ends_with("date"))
        .map(|(label, value)| format!("{label}: {value}"))
        .collect();
    if !dates.is_empty() {
        let _ = writeln!(out, "{}", dates.join(", "));
    }
    out.push('\n');

    // Column widths over every cell, headings included.
    let quantities: Vec<String> = doc
        .sections
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| format!("{} {}", l.quantity, l.unit))
        .collect();
    let lines = doc.sections.iter().flat_map(|s| &s.lines);
    let desc_w = lines
        .clone()
        .map(|l| INDENT.len() + width(&l.description))
        .chain(doc.after_usage.iter().map(|l| width(&l.label)))
        .chain(["Total (USD)".len(), "Description".len()])
        .max()
        .unwrap_or_default();
    let qty_w = quantities
        .iter()
        .map(|q| width(q))
        .chain(["Quantity".len()])
        .max()
        .unwrap_or_default();
    let price_w = lines
        .clone()
        .map(|l| width(&l.unit_price))
        .chain(["Unit price".len()])
        .max()
        .unwrap_or_default();
    let amount_w = lines
        .map(|l| usd(l.amount))
        .chain(doc.sections.iter().map(|s| usd(s.subtotal)))
        .chain(doc.after_usage.iter().map(|l| usd(l.amount)))
        .chain([usd(doc.usage_total), usd(doc.total), "Amount".to_owned()])
        .map(|a| width(&a))
        .max()
        .unwrap_or_default();

    let row = |out: &mut String, desc: &str, qty: &str, price: &str, amount: &str| {
        let line = format!(
            "{desc}{}{GAP}{}{GAP}{}{GAP}{}",
            pad(desc_w.saturating_sub(width(desc))),
            right(qty, qty_w),
            left(price, price_w),
            right(amount, amount_w),
        );
        let _ = writeln!(out, "{}", line.trim_end());
    };
    // A row with only a label and an amount.
    let total_row = |out: &mut String, label: &str, amount: &str| {
        row(out, label, "", "", amount);
    };

    if doc.sections.is_empty() {
        let _ = writeln!(out, "No usage in this period.\n");
    } else {
        row(&mut out, "Description", "Quantity", "Unit price", "Amount");
        let mut q = quantities.iter();
        for section in &doc.sections {
            out.push('\n');
            let _ = writeln!(out, "{}", section.title);
            for l in &section.lines {
                let desc = format!("{INDENT}{}", l.description);
                let qty = q.next().map(String::as_str).unwrap_or_default();
                row(&mut out, &desc, qty, &l.unit_price, &usd(l.amount));
            }
            total_row(
                &mut out,
                &format!("{INDENT}Subtotal"),
                &usd(section.subtotal),
            );
        }
        out.push('\n');
    }
    if !doc.after_usage.is_empty() {
        total_row(&mut out, "Usage", &usd(doc.usage_total));
        for l in &doc.after_usage {
            total_row(&mut out, &l.label, &usd(l.amount));
        }
    }
    total_row(
        &mut out,
        &format!("Total ({})", doc.currency),
        &usd(doc.total),
    );
    if !doc.notes.is_empty() {
        out.push_str("\nNotes\n");
        for n in &doc.notes {
            for (i, l) in wrap(n, NOTE_WIDTH - 2).iter().enumerate() {
                let _ = writeln!(out, "{}{l}", if i == 0 { "- " } else { "  " });
            }
        }
    }
    out
}

/// The document with every control character escaped (`\u{1b}`): names
/// come from recorded usage, and a terminal must not run them.
fn plain(doc: &Document) -> Document {
    let c = |s: &str| -> String {
        s.chars()
            .map(|ch| {
                if ch.is_control() {
                    ch.escape_default().to_string()
                } else {
                    ch.to_string()
                }
            })
            .collect()
    };
    let mut d = doc.clone();
    d.account = c(&d.account);
    for section in &mut d.sections {
        for l in &mut section.lines {
            l.description = c(&l.description);
        }
    }
    for l in &mut d.after_usage {
        l.label = c(&l.label);
    }
    d.notes = d.notes.iter().map(|n| c(n)).collect();
    d
}

/// Words into lines of at most `w` characters (a longer word stands alone).
fn wrap(text: &str, w: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && width(&line) + 1 + width(word) > w {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Characters, not bytes: descriptions may hold any name.
fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn right(s: &str, w: usize) -> String {
    format!("{}{s}", pad(w.saturating_sub(width(s))))
}

fn left(s: &str, w: usize) -> String {
    format!("{s}{}", pad(w.saturating_sub(width(s))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let json = r#"{"number": null, "account": "acme", "period": "2026-07", "status": "draft",
            "currency": "USD", "total": "0.36",
            "lines": [{"description": "evil\u001b[2J input tokens", "charge": "input_tokens",
                       "quantity": "120000", "unit": "token", "unit_price": "0.000003",
                       "amount": "0.36"}],
            "unpriced": [{"model": "x\u0007y", "records": 1}]}"#;
        let doc = Document::from_json(json, None).unwrap();
        let text = render(&doc);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("evil\\u{1b}[2J input tokens"), "{text}");
        assert!(text.contains("x\\u{7}y (1 records)"), "{text}");
    }
}
