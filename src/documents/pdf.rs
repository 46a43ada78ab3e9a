//! The invoice as a PDF, written with `pdf-writer` (a PDF object writer with
//! no dependencies and deterministic output: the same document gives the
//! same bytes, so a frozen PDF can be compared and hashed).
//!
//! The text is set in the PDF standard fonts Helvetica and Helvetica-Bold,
//! which every reader has, so nothing is embedded and the file stays small.
//! Their encoding (WinAnsi) covers Western European text; a character
//! outside it prints as `?` in the PDF (the HTML document shows every
//! character). Lines flow onto as many pages as they need, the table's
//! header repeated on each, and every page says "Page N of M".

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::{Document, Paper, usd};

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

const MARGIN_X: f32 = 50.0;
const MARGIN_TOP: f32 = 56.0;
const MARGIN_BOTTOM: f32 = 60.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

/// Advance widths (1/1000 em) of Helvetica and Helvetica-Bold for ASCII
/// 32–126, from the fonts' published metrics.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

/// A character's byte in WinAnsiEncoding (`?` when it has none).
fn win_ansi(c: char) -> u8 {
    let special = [
        ('€', 0x80),
        ('‚', 0x82),
        ('ƒ', 0x83),
        ('„', 0x84),
        ('…', 0x85),
        ('†', 0x86),
        ('‡', 0x87),
        ('ˆ', 0x88),
        ('‰', 0x89),
        ('Š', 0x8A),
        ('‹', 0x8B),
        ('Œ', 0x8C),
        ('Ž', 0x8E),
        ('‘', 0x91),
        ('’', 0x92),
        ('“', 0x93),
        ('”', 0x94),
        ('•', 0x95),
        ('–', 0x96),
        ('—', 0x97),
        ('˜', 0x98),
        ('™', 0x99),
        ('š', 0x9A),
        ('›', 0x9B),
        ('œ', 0x9C),
        ('ž', 0x9E),
        ('Ÿ', 0x9F),
    ];
    match c as u32 {
        0x20..=0x7E | 0xA0..=0xFF => c as u8,
        _ => special
            .iter()
            .find(|(s, _)| *s == c)
            .map_or(b'?', |(_, b)| *b),
    }
}

fn encode(s: &str) -> Vec<u8> {
    s.chars().map(win_ansi).collect()
}

/// The width of `s` in points at `size`. Characters beyond ASCII count as
/// an average letter (close enough for alignment and wrapping).
fn width(s: &str, font: Font, size: f32) -> f32 {
    let table = match font {
        Font::Regular => &HELVETICA,
        Font::Bold => &HELVETICA_BOLD,
    };
    let units: u32 = s
        .chars()
        .map(|c| match c as u32 {
            n @ 0x20..=0x7E => u32::from(table[(n - 0x20) as usize]),
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0
}

/// Break `text` into lines no wider than `max` points (at spaces; a word
/// longer than a line is cut).
fn wrap(text: &str, font: Font, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if width(&candidate, font, size) <= max {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word wider than a line: cut it where it no longer fits.
        for c in word.chars() {
            line.push(c);
            if width(&line, font, size) > max && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::replace(&mut line, c.to_string()));
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Pages being laid out, top to bottom.
struct Layout {
    width: f32,
    height: f32,
    pages: Vec<Content>,
    y: f32,
    /// Drawn again at the top of each new page (the table's header).
    repeat: Option<fn(&mut Layout)>,
}

impl Layout {
    fn new(paper: Paper) -> Layout {
        let (width, height) = paper.size();
        Layout {
            width,
            height,
            pages: vec![Content::new()],
            y: height - MARGIN_TOP,
            repeat: None,
        }
    }

    fn right(&self) -> f32 {
        self.width - MARGIN_X
    }

    fn page(&mut self) -> &mut Content {
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Make room for `height` points, starting a page when needed.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN_BOTTOM {
            self.pages.push(Content::new());
            self.y = self.height - MARGIN_TOP;
            if let Some(header) = self.repeat {
                header(self);
            }
        }
    }

    fn text(&mut self, x: f32, y: f32, font: Font, size: f32, s: &str, gray: f32) {
        self.text_rgb(x, y, font, size, s, (gray, gray, gray));
    }

    fn text_rgb(&mut self, x: f32, y: f32, font: Font, size: f32, s: &str, rgb: (f32, f32, f32)) {
        let name = match font {
            Font::Regular => REGULAR,
            Font::Bold => BOLD,
        };
        let bytes = encode(s);
        let c = self.page();
        c.set_fill_rgb(rgb.0, rgb.1, rgb.2);
        c.begin_text();
        c.set_font(name, size);
        c.next_line(x, y);
        c.show(Str(&bytes));
        c.end_text();
    }

    fn text_right(&mut self, right: f32, y: f32, font: Font, size: f32, s: &str, gray: f32) {
        let x = right - width(s, font, size);
        self.text(x, y, font, size, s, gray);
    }

    fn rule(&mut self, from: f32, to: f32, y: f32, thickness: f32, gray: f32) {
        let c = self.page();
        c.set_stroke_gray(gray);
        c.set_line_width(thickness);
        c.move_to(from, y);
        c.line_to(to, y);
        c.stroke();
    }

    fn shade(&mut self, x: f32, y: f32, w: f32, h: f32, gray: f32) {
        let c = self.page();
        c.set_fill_gray(gray);
        c.rect(x, y, w, h);
        c.fill_nonzero();
    }
}

// Columns of the lines table: right edges of the numbers, left of the unit.
fn col_quantity(l: &Layout) -> f32 {
    l.right() - 215.0
}
fn col_unit(l: &Layout) -> f32 {
    l.right() - 209.0
}
fn col_price(l: &Layout) -> f32 {
    l.right() - 75.0
}
const DESCRIPTION_WIDTH_CUT: f32 = 290.0;

fn table_header(l: &mut Layout) {
    let y = l.y - 10.0;
    let (q, u, p, r) = (col_quantity(l), col_unit(l), col_price(l), l.right());
    l.text(MARGIN_X, y, Font::Bold, 7.5, "DESCRIPTION", 0.0);
    l.text_right(q, y, Font::Bold, 7.5, "QUANTITY", 0.0);
    l.text(u, y, Font::Bold, 7.5, "UNIT", 0.0);
    l.text_right(p, y, Font::Bold, 7.5, "UNIT PRICE", 0.0);
    l.text_right(r, y, Font::Bold, 7.5, "AMOUNT", 0.0);
    l.rule(MARGIN_X, r, y - 4.0, 1.2, 0.0);
    l.y = y - 6.0;
}

/// The whole PDF. Deterministic: the same document, the same bytes.
pub fn render(doc: &Document, paper: Paper) -> Vec<u8> {
    let mut l = Layout::new(paper);
    let right = l.right();

    // Title, and the seller on the right.
    let top = l.y;
    l.text(
        MARGIN_X,
        top - 20.0,
        Font::Bold,
        20.0,
        if doc.finalized {
            "Invoice"
        } else {
            "Draft invoice"
        },
        0.0,
    );
    if !doc.finalized {
        l.text_rgb(
            MARGIN_X,
            top - 36.0,
            Font::Bold,
            8.0,
            "DRAFT - NOT A BILL",
            (0.73, 0.11, 0.11),
        );
    }
    let mut y = top - 8.0;
    let seller = doc.seller_lines();
    if !seller.is_empty() {
        l.text_right(right, y, Font::Bold, 7.0, "FROM", 0.45);
        y -= 12.0;
        for s in &seller {
            l.text_right(right, y, Font::Regular, 9.0, s, 0.0);
            y -= 11.5;
        }
    }
    l.y = y.min(top - 44.0) - 18.0;

    // Bill-to on the left, the facts on the right.
    let top = l.y;
    l.text(MARGIN_X, top, Font::Bold, 7.0, "BILL TO", 0.45);
    let mut y = top - 12.0;
    for s in doc.bill_to_lines() {
        l.text(MARGIN_X, y, Font::Regular, 9.0, &s, 0.0);
        y -= 11.5;
    }
    let mut fy = top;
    for (label, value) in doc.facts() {
        l.text(right - 190.0, fy, Font::Regular, 9.0, label, 0.42);
        l.text_right(right, fy, Font::Bold, 9.0, &value, 0.0);
        fy -= 13.0;
    }
    l.y = y.min(fy) - 10.0;

    // The amount due, shaded.
    let box_top = l.y;
    l.shade(MARGIN_X, box_top - 26.0, right - MARGIN_X, 26.0, 0.95);
    l.shade(MARGIN_X, box_top - 26.0, 2.5, 26.0, 0.0);
    let due_by = doc
        .due_at
        .map(|d| format!("due by {}", super::date_words(d)))
        .unwrap_or_else(|| "due once finalized".to_owned());
    l.text(
        MARGIN_X + 10.0,
        box_top - 17.0,
        Font::Regular,
        9.0,
        &format!("Amount due ({})", doc.currency),
        0.0,
    );
    let amount = usd(doc.total);
    let mid = (MARGIN_X + right) / 2.0;
    l.text(
        mid - width(&amount, Font::Bold, 14.0) / 2.0,
        box_top - 18.0,
        Font::Bold,
        14.0,
        &amount,
        0.0,
    );
    l.text_right(
        right - 8.0,
        box_top - 17.0,
        Font::Regular,
        9.0,
        &due_by,
        0.0,
    );
    l.y = box_top - 26.0 - 16.0;

    // The lines, by category.
    table_header(&mut l);
    l.repeat = Some(table_header);
    let description_width = right - MARGIN_X - DESCRIPTION_WIDTH_CUT;
    if doc.sections.is_empty() {
        l.room(14.0);
        let y = l.y - 11.0;
        l.text(
            MARGIN_X,
            y,
            Font::Regular,
            9.0,
            "No usage in this period.",
            0.0,
        );
        l.y = y - 5.0;
    }
    for s in &doc.sections {
        l.room(34.0);
        let y = l.y - 15.0;
        l.text(MARGIN_X, y, Font::Bold, 9.5, s.title, 0.0);
        l.y = y - 5.0;
        for line in &s.lines {
            let wrapped = wrap(&line.description, Font::Regular, 8.5, description_width);
            let height = 11.0 * wrapped.len() as f32 + 4.0;
            l.room(height);
            let y = l.y - 10.5;
            for (i, w) in wrapped.iter().enumerate() {
                l.text(MARGIN_X, y - 11.0 * i as f32, Font::Regular, 8.5, w, 0.0);
            }
            let (q, u, p) = (col_quantity(&l), col_unit(&l), col_price(&l));
            l.text_right(q, y, Font::Regular, 8.5, &line.quantity, 0.0);
            l.text(u, y, Font::Regular, 8.5, &line.unit, 0.0);
            l.text_right(p, y, Font::Regular, 8.5, &line.unit_price, 0.0);
            l.text_right(right, y, Font::Regular, 8.5, &usd(line.amount), 0.0);
            l.y -= height;
            let ry = l.y + 0.5;
            l.rule(MARGIN_X, right, ry, 0.4, 0.85);
        }
        l.room(16.0);
        let y = l.y - 11.5;
        l.text(
            MARGIN_X,
            y,
            Font::Bold,
            8.5,
            &format!("Subtotal: {}", s.title.to_lowercase()),
            0.0,
        );
        l.text_right(right, y, Font::Bold, 8.5, &usd(s.subtotal), 0.0);
        l.y = y - 5.0;
    }
    l.repeat = None;

    // Totals, on the right half.
    let mut rows: Vec<(String, String, Font)> =
        vec![("Usage".to_owned(), usd(doc.usage_total), Font::Regular)];
    for s in &doc.after_usage {
        rows.push((s.label.clone(), usd(s.amount), Font::Regular));
    }
    let left = mid - 10.0;
    l.room(16.0 * (rows.len() as f32 + 2.0) + 14.0);
    l.y -= 14.0;
    for (label, value, font) in rows {
        let y = l.y - 11.0;
        for (i, w) in wrap(&label, font, 9.0, right - left - 80.0)
            .iter()
            .enumerate()
        {
            l.text(left, y - 11.0 * i as f32, font, 9.0, w, 0.0);
        }
        l.text_right(right, y, font, 9.0, &value, 0.0);
        l.y = y - 5.0 - 11.0 * (wrap(&label, font, 9.0, right - left - 80.0).len() as f32 - 1.0);
    }
    let total = usd(doc.total);
    l.rule(left, right, l.y - 1.0, 1.2, 0.0);
    let y = l.y - 13.0;
    l.text(left, y, Font::Bold, 9.5, "Total", 0.0);
    l.text_right(right, y, Font::Bold, 9.5, &total, 0.0);
    let y = y - 17.0;
    l.text(
        left,
        y,
        Font::Bold,
        11.0,
        &format!("Amount due ({})", doc.currency),
        0.0,
    );
    l.text_right(right, y, Font::Bold, 11.0, &total, 0.0);
    l.y = y - 10.0;

    // Notes.
    if !doc.notes.is_empty() {
        l.room(30.0);
        l.y -= 14.0;
        let y = l.y;
        l.text(MARGIN_X, y, Font::Bold, 7.0, "NOTES", 0.45);
        l.y = y - 4.0;
        for n in &doc.notes {
            let wrapped = wrap(n, Font::Regular, 8.0, right - MARGIN_X);
            for w in wrapped {
                l.room(11.0);
                let y = l.y - 10.0;
                l.text(MARGIN_X, y, Font::Regular, 8.0, &w, 0.2);
                l.y = y;
            }
            l.y -= 4.0;
        }
    }

    finish(doc, l)
}

/// Number the pages and write the file.
fn finish(doc: &Document, mut l: Layout) -> Vec<u8> {
    let count = l.pages.len();
    let footer_left = format!("{} - {} - {}", doc.title(), doc.account, doc.period_words());
    for i in 0..count {
        let page_no = format!("Page {} of {count}", i + 1);
        let last = l.pages.len() - 1;
        l.pages.swap(i, last);
        l.text(MARGIN_X, 32.0, Font::Regular, 7.5, &footer_left, 0.5);
        let right = l.right();
        l.text_right(right, 32.0, Font::Regular, 7.5, &page_no, 0.5);
        l.pages.swap(i, last);
    }

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let page_refs: Vec<Ref> = (0..count)
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_refs.iter().copied())
        .count(count as i32);
    for (i, content) in l.pages.into_iter().enumerate() {
        let page_ref = page_refs[i];
        let content_ref = Ref::new(page_ref.get() + 1);
        let mut page = pdf.page(page_ref);
        page.media_box(Rect::new(0.0, 0.0, l.width, l.height));
        page.parent(tree);
        page.contents(content_ref);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
        fonts.finish();
        resources.finish();
        page.finish();
        pdf.stream(content_ref, &content.finish());
    }
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("{} - {} - {}", doc.title(), doc.account, doc.period_words());
    pdf.document_info(info)
        .title(TextStr(&title))
        .producer(TextStr("tally"));
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_measured_and_wrapped() {
        // Ten digits of Helvetica at 10 pt: 10 × 556 / 1000 × 10.
        assert!((width("0123456789", Font::Regular, 10.0) - 55.6).abs() < 0.01);
        let lines = wrap(
            "claude-sonnet-4-20250514 5-minute cache write tokens (batch, long context)",
            Font::Regular,
            8.5,
            120.0,
        );
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, Font::Regular, 8.5) <= 120.0));
        assert_eq!(encode("Café €5 — 東"), b"Caf\xe9 \x805 \x97 ?");
    }
}
