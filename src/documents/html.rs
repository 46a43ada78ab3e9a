//! The invoice as one self-contained HTML page: styles inline, no script,
//! no external asset (it opens offline and in a mail client), and a print
//! stylesheet whose content is at most 180 mm wide, so it prints on A4 and
//! on US Letter alike; a long table repeats its header on every page.

use std::fmt::Write;

use super::{Document, usd};

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #111827;
  font: 10pt/1.45 "Helvetica Neue", Helvetica, Arial, sans-serif; }
main { max-width: 180mm; margin: 12mm auto; padding: 14mm; background: #fff;
  box-shadow: 0 1px 4px rgba(0,0,0,.12); }
header { display: flex; justify-content: space-between; align-items: flex-start; gap: 12mm; }
h1 { margin: 0; font-size: 20pt; letter-spacing: .02em; }
h2 { margin: 0 0 1.5mm; font-size: 8pt; text-transform: uppercase; letter-spacing: .08em; color: #6b7280; }
.seller p, .bill-to p { margin: 0; }
.seller { text-align: right; }
.draft { display: inline-block; margin-top: 2mm; padding: .5mm 2mm; border: 1px solid #b91c1c;
  color: #b91c1c; font-size: 8pt; font-weight: bold; letter-spacing: .1em; }
.parties { display: flex; justify-content: space-between; gap: 12mm; margin: 9mm 0 6mm; }
dl.facts { display: grid; grid-template-columns: auto auto; gap: .5mm 5mm; margin: 0; align-content: start; }
dl.facts dt { color: #6b7280; }
dl.facts dd { margin: 0; text-align: right; font-weight: bold; }
.due { display: flex; justify-content: space-between; align-items: baseline; margin: 0 0 7mm;
  padding: 3mm 4mm; background: #f3f4f6; border-left: 3px solid #111827; }
.due strong { font-size: 14pt; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: 1.3mm 2mm; vertical-align: top; }
thead th { border-bottom: 1.5px solid #111827; text-align: left; font-size: 8pt;
  text-transform: uppercase; letter-spacing: .05em; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.category th { padding-top: 4mm; text-align: left; font-size: 10pt; }
tbody tr.line td { border-bottom: 1px solid #e5e7eb; }
tr.subtotal td { font-weight: bold; }
table.totals { width: 55%; margin: 6mm 0 0 auto; }
table.totals th { text-align: left; font-weight: normal; }
table.totals tr.total th, table.totals tr.total td { border-top: 1.5px solid #111827; font-weight: bold; }
table.totals tr.amount-due th, table.totals tr.amount-due td { font-size: 12pt; font-weight: bold; }
.notes { margin-top: 8mm; font-size: 8.5pt; color: #374151; }
.notes p { margin: 0 0 2mm; }
footer { margin-top: 8mm; font-size: 7.5pt; color: #9ca3af; }
@page { margin: 12mm 14mm; }
@media print {
  body { background: none; }
  main { max-width: none; margin: 0; padding: 0; box-shadow: none; }
  .parties { margin: 6mm 0 4mm; }
  .due { margin-bottom: 5mm; }
  tr.category th { padding-top: 3mm; }
  .notes { margin-top: 5mm; }
  footer { margin-top: 4mm; }
  thead { display: table-header-group; }
  tr, .due, table.totals, .notes p { break-inside: avoid; }
}
"#;

use crate::html::esc;

fn lines_block(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| esc(l))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// The whole page. Deterministic: the same document, the same bytes.
pub fn render(doc: &Document) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let title = doc.title();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · {} · {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&title),
        esc(&doc.account),
        esc(&doc.period_words())
    );

    // Header: the title, and the seller on the right.
    h.push_str("<header>\n<div>\n");
    let _ = writeln!(
        h,
        "<h1>{}</h1>",
        if doc.finalized {
            "Invoice"
        } else {
            "Draft invoice"
        }
    );
    if !doc.finalized {
        h.push_str("<div class=\"draft\">DRAFT · NOT A BILL</div>\n");
    }
    h.push_str("</div>\n");
    let seller = doc.seller_lines();
    if !seller.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"seller\"><h2>From</h2><p>{}</p></div>",
            lines_block(&seller)
        );
    }
    h.push_str("</header>\n");

    // Bill-to and the invoice's facts.
    let _ = writeln!(
        h,
        "<section class=\"parties\">\n<div class=\"bill-to\"><h2>Bill to</h2><p>{}</p></div>",
        lines_block(&doc.bill_to_lines())
    );
    h.push_str("<dl class=\"facts\">\n");
    for (label, value) in doc.facts() {
        let _ = writeln!(h, "<dt>{label}</dt><dd>{}</dd>", esc(&value));
    }
    h.push_str("</dl>\n</section>\n");

    let due_by = doc
        .due_at
        .map(|d| format!("due by {}", super::date_words(d)))
        .unwrap_or_else(|| "due once finalized".to_owned());
    let _ = writeln!(
        h,
        "<div class=\"due\"><span>Amount due ({})</span><strong>{}</strong><span>{}</span></div>",
        esc(&doc.currency),
        usd(doc.total),
        esc(&due_by)
    );

    // The lines, by category.
    h.push_str(
        "<table class=\"lines\">\n<thead><tr><th>Description</th><th class=\"num\">Quantity</th>\
         <th>Unit</th><th class=\"num\">Unit price</th><th class=\"num\">Amount</th></tr></thead>\n",
    );
    if doc.sections.is_empty() {
        h.push_str("<tbody><tr class=\"line\"><td colspan=\"5\">No usage in this period.</td></tr></tbody>\n");
    }
    for s in &doc.sections {
        let _ = writeln!(
            h,
            "<tbody>\n<tr class=\"category\"><th colspan=\"5\">{}</th></tr>",
            esc(s.title)
        );
        for l in &s.lines {
            let _ = writeln!(
                h,
                "<tr class=\"line\"><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&l.description),
                esc(&l.quantity),
                esc(&l.unit),
                esc(&l.unit_price),
                usd(l.amount)
            );
        }
        let _ = writeln!(
            h,
            "<tr class=\"subtotal\"><td colspan=\"4\">Subtotal: {}</td><td class=\"num\">{}</td></tr>\n</tbody>",
            esc(&s.title.to_lowercase()),
            usd(s.subtotal)
        );
    }
    h.push_str("</table>\n");

    // Totals: usage, then the minimum, credits and tax, the total and the amount due.
    h.push_str("<table class=\"totals\">\n");
    let _ = writeln!(
        h,
        "<tr><th>Usage</th><td class=\"num\">{}</td></tr>",
        usd(doc.usage_total)
    );
    for s in &doc.after_usage {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"num\">{}</td></tr>",
            esc(&s.label),
            usd(s.amount)
        );
    }
    let _ = writeln!(
        h,
        "<tr class=\"total\"><th>Total</th><td class=\"num\">{}</td></tr>",
        usd(doc.total)
    );
    let _ = writeln!(
        h,
        "<tr class=\"amount-due\"><th>Amount due ({})</th><td class=\"num\">{}</td></tr>\n</table>",
        esc(&doc.currency),
        usd(doc.total)
    );

    if !doc.notes.is_empty() {
        h.push_str("<section class=\"notes\">\n<h2>Notes</h2>\n");
        for n in &doc.notes {
            let _ = writeln!(h, "<p>{}</p>", esc(n));
        }
        h.push_str("</section>\n");
    }
    h.push_str("<footer>Generated by tally from the usage ledger. Amounts in US dollars, rounded to the cent per line.</footer>\n");
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
