//! The container roll-up (migrations 9 and 10): each container's execution
//! time kept as records arrive, and per account and day the sums container
//! billing needs, so a period's container time is billed without reading its
//! records.
//!
//! A container keeps the union of its billable records' intervals as a small
//! set of disjoint spans. A record merges its interval into the set, so
//! records may arrive in any order: the set, and so the execution time, is
//! the same. Two cases still send billing back to a container's records (the
//! container goes *inexact*): a record that declared web tools or is a
//! refusal before output (whether it is billed depends on the price book in
//! force, which the roll-up cannot know),
//! and a container whose set would pass [`MAX_SPANS`] (kept small so a
//! container's row stays cheap to rewrite).

use std::collections::BTreeMap;

use crate::record::{NewRecord, RecordKind};
use crate::time::Micros;

/// Execution time under this many seconds is counted apart, so billed time
/// at this minimum is `execution + minimum × short − short seconds`. Price
/// books with another minimum are billed from the records.
pub const ROLLUP_MINIMUM_SECONDS: i64 = 300;

/// Most disjoint spans a container keeps before it goes inexact.
pub const MAX_SPANS: usize = 128;

/// What the roll-up keeps of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub account: String,
    /// Earliest code-execution or file-preload record (None: none yet).
    pub first_at: Option<Micros>,
    /// The union of the intervals, as disjoint `[start, end]` spans of
    /// positive length in ascending order (empty once inexact).
    pub spans: Vec<(Micros, Micros)>,
    pub exact: bool,
}

/// A `containers` row as selected by [`super::sql::CONTAINER_STATES`] or
/// returned by [`super::sql::CONTAINER_CLAIM_RETURNING`].
#[derive(sqlx::FromRow)]
pub(super) struct ContainerStateRow {
    container_id: String,
    account: String,
    first_at: Option<Micros>,
    spans: String,
    exact: i64,
}

impl ContainerStateRow {
    /// The container's id and state; stored spans are validated, and a bad
    /// one names its container.
    pub(super) fn into_state(self) -> Result<(String, ContainerState), super::StoreError> {
        let spans = decode_spans(&self.spans).map_err(|e| {
            super::StoreError::Invalid(format!("container {}: {e}", self.container_id))
        })?;
        let state = ContainerState {
            account: self.account,
            first_at: self.first_at,
            spans,
            exact: self.exact != 0,
        };
        Ok((self.container_id, state))
    }
}

/// A change to the per-account, per-day sums of exact containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDayDelta {
    pub containers: i64,
    pub execution_seconds: i64,
    pub short_containers: i64,
    pub short_seconds: i64,
}

/// Key of a [`ContainerDayDelta`]: account and UTC day number.
pub type ContainerDayKey = (String, i64);

/// Whether a record counts toward its container's time (SPEC 4.2): a
/// message that ran code execution or had files preloaded.
pub fn counts_toward_container(r: &NewRecord) -> bool {
    r.container_id.is_some()
        && r.kind == RecordKind::Message
        && (r.uses_code_execution || r.files_preloaded)
}

impl ContainerState {
    pub fn new(account: &str) -> Self {
        ContainerState {
            account: account.to_owned(),
            first_at: None,
            spans: Vec::new(),
            exact: true,
        }
    }

    /// Execution time in whole seconds, rounded up.
    pub fn execution_seconds(&self) -> i64 {
        crate::time::covered_seconds(&self.spans)
    }

    /// This container's share of the day sums: (day, seconds), if exact.
    fn contribution(&self) -> Option<(i64, i64)> {
        let first = self.first_at?;
        self.exact
            .then(|| (crate::time::day_number(first), self.execution_seconds()))
    }

    /// Take one more record of the container into account, in any order.
    /// `book_decides`: whether the record is billed at all depends on the
    /// price book in force (web tools, a refusal), which the roll-up cannot know.
    pub fn add(&mut self, recorded_at: Micros, started_at: Option<Micros>, book_decides: bool) {
        self.first_at = Some(self.first_at.map_or(recorded_at, |f| f.min(recorded_at)));
        if book_decides {
            self.go_inexact();
        }
        if !self.exact {
            return;
        }
        match started_at {
            Some(start) if start > recorded_at => self.go_inexact(),
            Some(start) if start < recorded_at => {
                crate::time::merge_span(&mut self.spans, (start, recorded_at));
                if self.spans.len() > MAX_SPANS {
                    self.go_inexact();
                }
            }
            // No start, or a zero-length interval: no time, and the union is unchanged.
            _ => {}
        }
    }

    fn go_inexact(&mut self) {
        self.exact = false;
        self.spans = Vec::new();
    }
}

/// The spans as stored: `start:end` pairs in microseconds, comma-separated.
pub fn encode_spans(spans: &[(Micros, Micros)]) -> String {
    let mut out = String::with_capacity(spans.len() * 34);
    for (i, (s, e)) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&s.to_string());
        out.push(':');
        out.push_str(&e.to_string());
    }
    out
}

/// Read stored spans back (see [`encode_spans`]), refusing any that are not
/// ascending, disjoint and of positive length: a damaged row must not bill a
/// wrong union silently.
pub fn decode_spans(text: &str) -> Result<Vec<(Micros, Micros)>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let spans = text
        .split(',')
        .map(|pair| {
            let (s, e) = pair
                .split_once(':')
                .ok_or_else(|| format!("spans: {pair:?} is not start:end"))?;
            let num = |v: &str| {
                v.parse::<i64>()
                    .map_err(|_| format!("spans: {v:?} is not a number"))
            };
            Ok((num(s)?, num(e)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let ordered = spans.iter().all(|(s, e)| s < e)
        && spans.windows(2).all(|w| match w {
            [(_, end), (start, _)] => end < start,
            _ => true,
        });
    if ordered {
        Ok(spans)
    } else {
        Err(format!(
            "spans {text:?} are not ascending, disjoint and of positive length"
        ))
    }
}

/// Apply `records` (all counting toward containers) to the states, adding
/// each container's change to the day sums in `deltas`. A container not in
/// `states` starts empty, owned by its first record's account.
pub fn apply<'a>(
    states: &mut BTreeMap<String, ContainerState>,
    records: impl IntoIterator<Item = &'a NewRecord>,
    deltas: &mut BTreeMap<ContainerDayKey, ContainerDayDelta>,
) {
    let mut by_container: BTreeMap<&str, Vec<&NewRecord>> = BTreeMap::new();
    for r in records {
        if let Some(c) = r.container_id.as_deref() {
            by_container.entry(c).or_default().push(r);
        }
    }
    for (id, recs) in by_container {
        let state = states
            .entry(id.to_owned())
            .or_insert_with(|| ContainerState::new(recs.first().map_or("", |r| &r.account)));
        let before = state.contribution();
        for r in recs {
            state.add(
                r.recorded_at,
                r.started_at,
                r.web_tools_20260209 || r.refusal.is_some(),
            );
        }
        let after = state.contribution();
        if before == after {
            continue;
        }
        let account = state.account.clone();
        let mut change = |(day, seconds): (i64, i64), sign: i64| {
            let d = deltas.entry((account.clone(), day)).or_default();
            d.containers += sign;
            d.execution_seconds += sign * seconds;
            if seconds < ROLLUP_MINIMUM_SECONDS {
                d.short_containers += sign;
                d.short_seconds += sign * seconds;
            }
        };
        if let Some(b) = before {
            change(b, -1);
        }
        if let Some(a) = after {
            change(a, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Micros = 1_000_000;

    #[test]
    fn intervals_make_the_union_in_any_order() {
        let records = [
            (100 * S, Some(10 * S)),
            (150 * S, Some(90 * S)),  // overlaps: [10, 150]
            (400 * S, Some(300 * S)), // a gap
            (350 * S, Some(310 * S)), // inside [300, 400]
            (5 * S, None),            // no time, but the first record
            (160 * S, Some(150 * S)), // touches [10, 150]
        ];
        let expected = vec![(10 * S, 160 * S), (300 * S, 400 * S)];
        // Every rotation and the reverse give the same state.
        let mut orders: Vec<Vec<usize>> = (0..records.len())
            .map(|k| {
                (0..records.len())
                    .map(|i| (i + k) % records.len())
                    .collect()
            })
            .collect();
        orders.push((0..records.len()).rev().collect());
        for order in orders {
            let mut c = ContainerState::new("a");
            for i in order {
                let (end, start) = records[i];
                c.add(end, start, false);
            }
            assert!(c.exact);
            assert_eq!(c.spans, expected);
            assert_eq!(c.execution_seconds(), 250);
            assert_eq!(c.first_at, Some(5 * S));
        }
    }

    #[test]
    fn a_late_record_bridges_spans() {
        let mut c = ContainerState::new("a");
        c.add(20 * S, Some(10 * S), false);
        c.add(60 * S, Some(50 * S), false);
        c.add(90 * S, Some(80 * S), false);
        c.add(55 * S, Some(15 * S), false); // joins the first two
        assert_eq!(c.spans, vec![(10 * S, 60 * S), (80 * S, 90 * S)]);
        c.add(100 * S, Some(0), false); // covers everything
        assert_eq!(c.spans, vec![(0, 100 * S)]);
    }

    #[test]
    fn web_tools_or_too_many_spans_make_it_inexact() {
        let mut w = ContainerState::new("a");
        w.add(100 * S, Some(50 * S), false);
        w.add(200 * S, None, true);
        assert!(!w.exact);
        assert!(w.spans.is_empty());
        let mut many = ContainerState::new("a");
        for i in 0..=MAX_SPANS as i64 {
            assert!(many.exact);
            many.add((10 * i + 1) * S, Some(10 * i * S), false);
        }
        assert!(!many.exact);
    }

    #[test]
    fn spans_round_trip_as_text() {
        let spans = vec![(-5, 7), (1_700_000_000_000_000, 1_700_000_000_500_000)];
        assert_eq!(decode_spans(&encode_spans(&spans)), Ok(spans));
        assert_eq!(decode_spans(""), Ok(vec![]));
        assert!(decode_spans("1:x").is_err());
        assert!(decode_spans("12").is_err());
        assert!(decode_spans("5:5").is_err(), "empty span");
        assert!(decode_spans("1:4,3:9").is_err(), "overlapping spans");
        assert!(decode_spans("10:20,1:4").is_err(), "spans out of order");
    }

    #[test]
    fn partial_seconds_round_up() {
        let mut c = ContainerState::new("a");
        c.add(S + 1, Some(0), false);
        assert_eq!(c.execution_seconds(), 2);
    }
}
