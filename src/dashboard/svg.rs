//! Server-rendered SVG charts: no script, no external asset, readable when
//! printed. Sizes are in user units; the SVG scales to its container.

use std::fmt::Write;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::esc;
use crate::finance::usd;

/// One stacked column: a label and one value per series.
pub struct Column {
    pub label: String,
    pub values: Vec<Decimal>,
}

/// Series colours (colour-blind safe), in series order.
pub const COLOURS: [&str; 4] = ["#3b6fb6", "#e08a2c", "#5aa469", "#9a6fb0"];

fn px(d: Decimal) -> f64 {
    // Pixels only: amounts themselves stay Decimal in the labels.
    d.to_f64().unwrap_or(0.0)
}

/// At most this many intervals on a dollar axis.
const MAX_TICKS: i64 = 5;

/// A round axis for values up to `max`: a step of 1, 2 or 5 × a power of ten
/// (at least a cent) and the number of steps to reach `max` (1 to
/// [`MAX_TICKS`]), so every tick is a round amount ($0, $20, $40, …).
fn axis(max: Decimal) -> (Decimal, i64) {
    let max = max.max(Decimal::ZERO);
    // Past what a round step can reach: one interval up to the maximum.
    let whole = (max.max(Decimal::ONE), 1);
    let mut step = Decimal::new(1, 2);
    loop {
        for m in [1, 2, 5] {
            let Some(candidate) = step.checked_mul(Decimal::from(m)) else {
                return whole;
            };
            let reaches = candidate
                .checked_mul(Decimal::from(MAX_TICKS))
                .is_none_or(|top| top >= max);
            if reaches {
                let steps = (max / candidate).ceil().to_i64().unwrap_or(1).max(1);
                // The top tick itself must be representable.
                return match candidate.checked_mul(Decimal::from(steps)) {
                    Some(_) => (candidate, steps),
                    None => whole,
                };
            }
        }
        match step.checked_mul(Decimal::TEN) {
            Some(next) => step = next,
            None => return whole,
        }
    }
}

/// A tick's label: whole dollars without cents when the step is whole.
fn tick_label(v: Decimal, step: Decimal) -> String {
    let text = usd(v);
    if step.fract().is_zero() {
        text.trim_end_matches(".00").to_owned()
    } else {
        text
    }
}

/// Stacked columns with a dollar axis; every segment has a tooltip.
pub fn stacked_columns(columns: &[Column], series: &[&str], title: &str) -> String {
    let (w, h, left, bottom, top) = (900.0, 260.0, 70.0, 30.0, 10.0);
    let totals: Vec<Decimal> = columns
        .iter()
        .map(|c| c.values.iter().map(|v| (*v).max(Decimal::ZERO)).sum())
        .collect();
    let (step, steps) = axis(totals.iter().copied().max().unwrap_or_default());
    let max = step * Decimal::from(steps);
    let plot_h = h - bottom - top;
    let slot = (w - left) / columns.len().max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(title)
    );
    for i in 0..=steps {
        let v = step * Decimal::from(i);
        let y = top + plot_h - plot_h * px(v) / px(max);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 4.0,
            tick_label(v, step)
        );
    }
    for (i, c) in columns.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let bw = slot * 0.7;
        let mut y = top + plot_h;
        for (j, v) in c.values.iter().enumerate() {
            if *v <= Decimal::ZERO {
                continue;
            }
            let bh = plot_h * px(*v) / px(max);
            y -= bh;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                COLOURS.get(j).unwrap_or(&"#888"),
                esc(&c.label),
                esc(series.get(j).unwrap_or(&"")),
                usd(*v)
            );
        }
        // Label every column when few, else every fifth.
        if columns.len() <= 12 || i % 5 == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                h - 10.0,
                esc(&c.label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars, largest first, with the amount at the end of each.
pub fn bars(rows: &[(String, Decimal)], title: &str) -> String {
    let (w, row_h, label_w) = (900.0, 26.0, 280.0);
    let h = row_h * rows.len().max(1) as f64 + 10.0;
    let max = rows
        .iter()
        .map(|r| r.1)
        .max()
        .unwrap_or_default()
        .max(Decimal::new(1, 2));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 5.0 + row_h * i as f64;
        let bw = ((w - label_w - 110.0) * px((*v).max(Decimal::ZERO)) / px(max)).max(1.0);
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="label" text-anchor="end">{}</text><rect x="{label_w}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" class="label">{}</text>"#,
            label_w - 8.0,
            y + 17.0,
            esc(label),
            row_h - 6.0,
            COLOURS[0],
            esc(label),
            usd(*v),
            label_w + bw + 6.0,
            y + 17.0,
            usd(*v)
        );
    }
    s.push_str("</svg>");
    s
}

/// A used-against-allowance meter: `used` of `allowance` (hours).
pub fn meter(used: Decimal, allowance: Decimal, label: &str) -> String {
    let (w, h) = (900.0, 34.0);
    let scale = used.max(allowance).max(Decimal::ONE);
    let free_w = (w * px(allowance.min(used)) / px(scale)).max(0.0);
    let over_w = (w * px((used - allowance).max(Decimal::ZERO)) / px(scale)).max(0.0);
    let line_x = w * px(allowance) / px(scale);
    format!(
        r##"<svg class="meter" viewBox="0 0 {w} {h}" role="img" aria-label="{label}"><rect x="0" y="6" width="{w}" height="22" fill="#eef1f5"/><rect x="0" y="6" width="{free_w:.1}" height="22" fill="{}"><title>within the free allowance</title></rect><rect x="{free_w:.1}" y="6" width="{over_w:.1}" height="22" fill="{}"><title>billed beyond the allowance</title></rect><line x1="{line_x:.1}" x2="{line_x:.1}" y1="0" y2="{h}" stroke="#222" stroke-width="2"/></svg>"##,
        COLOURS[2],
        COLOURS[1],
        label = esc(label)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn axis_ticks_are_round_and_never_overflow() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // $37 → $0, $10, … $40; $5 → $0, $1, … $5; $0.003 → one cent.
        assert_eq!(axis(d("37")), (d("10"), 4));
        assert_eq!(axis(d("5")), (d("1"), 5));
        assert_eq!(axis(d("5.01")), (d("2"), 3));
        assert_eq!(axis(d("0.003")), (d("0.01"), 1));
        assert_eq!(axis(Decimal::ZERO), (d("0.01"), 1));
        assert_eq!(axis(d("1234")), (d("500"), 3));
        let (step, steps) = axis(Decimal::MAX);
        assert!(step > Decimal::ZERO && steps >= 1);
        assert_eq!(tick_label(d("20"), d("10")), "$20");
        assert_eq!(tick_label(d("0.5"), d("0.1")), "$0.50");
    }
}
