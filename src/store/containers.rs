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
//!
//! A container's time is attributed (docs/invoices.md, docs/finance.md) to the workspace, API key
//! id, user and tags of its first record (earliest `recorded_at`, then lowest
//! seq; in an exact container every record is billable), so each container
//! keeps that record's attribution too, and the same sums are kept per
//! dimension value (migration 15).

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
    /// The seq of that record (ties on `recorded_at` go to the lower seq).
    pub first_seq: Option<i64>,
    /// That record's attribution: `(dim, value)` pairs as in the dimension
    /// roll-up, sorted.
    pub attribution: Vec<Pair>,
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
    first_seq: Option<i64>,
    attribution: String,
    spans: String,
    exact: i64,
}

impl ContainerStateRow {
    /// The container's id and state; stored spans are validated, and a bad
    /// one names its container.
    pub(super) fn into_state(self) -> Result<(String, ContainerState), super::StoreError> {
        let invalid =
            |e: String| super::StoreError::Invalid(format!("container {}: {e}", self.container_id));
        let spans = decode_spans(&self.spans).map_err(invalid)?;
        let attribution = decode_attribution(&self.attribution).map_err(invalid)?;
        let state = ContainerState {
            account: self.account,
            first_at: self.first_at,
            first_seq: self.first_seq,
            attribution,
            spans,
            exact: self.exact != 0,
        };
        Ok((self.container_id, state))
    }
}

/// One attribution pair: the dimension as `usage_dim_rollup.dim` names it
/// (`workspace`, `api_key_id`, `user`, `tag:KEY`) and the value.
pub type Pair = (String, String);

/// A change to the per-account, per-day sums of exact containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDayDelta {
    pub containers: i64,
    pub execution_seconds: i64,
    pub short_containers: i64,
    pub short_seconds: i64,
}

impl ContainerDayDelta {
    /// Count a container of `seconds` in (`sign` 1) or out (−1).
    fn count(&mut self, seconds: i64, sign: i64) {
        self.containers += sign;
        self.execution_seconds += sign * seconds;
        if seconds < ROLLUP_MINIMUM_SECONDS {
            self.short_containers += sign;
            self.short_seconds += sign * seconds;
        }
    }
}

/// Key of a [`ContainerDayDelta`]: account and UTC day number.
pub type ContainerDayKey = (String, i64);

/// Key of a per-dimension [`ContainerDayDelta`]: dimension, UTC day number,
/// account and value (the order of `container_dim_days`' key).
pub type ContainerDimKey = (String, i64, String, String);

pub type DayChanges = Vec<(ContainerDayKey, ContainerDayDelta)>;
pub type DimChanges = Vec<(ContainerDimKey, ContainerDayDelta)>;

/// The changes one write makes to the container roll-up's sums.
#[derive(Debug, Clone, Default)]
pub struct ContainerDeltas {
    pub days: BTreeMap<ContainerDayKey, ContainerDayDelta>,
    pub dims: BTreeMap<ContainerDimKey, ContainerDayDelta>,
}

impl ContainerDeltas {
    /// The changes that are not nothing, in key order.
    pub fn nonzero(self) -> (DayChanges, DimChanges) {
        let zero = ContainerDayDelta::default();
        (
            self.days.into_iter().filter(|(_, d)| *d != zero).collect(),
            self.dims.into_iter().filter(|(_, d)| *d != zero).collect(),
        )
    }
}

/// Whether a record counts toward its container's time (docs/billing.md): a
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
            first_seq: None,
            attribution: Vec::new(),
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

    /// Make the record at `(recorded_at, seq)` the container's first if it
    /// comes before the one kept (call before [`Self::add`] for the record).
    pub fn take_first(
        &mut self,
        recorded_at: Micros,
        seq: i64,
        attribution: impl FnOnce() -> Vec<Pair>,
    ) {
        let first = self
            .first_at
            .map(|at| (at, self.first_seq.unwrap_or(i64::MAX)));
        if first.is_none_or(|first| (recorded_at, seq) < first) {
            self.first_seq = Some(seq);
            let mut pairs = attribution();
            pairs.sort_unstable();
            self.attribution = pairs;
        }
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

/// Apply `records` (all counting toward containers, each with its seq) to
/// the states, adding each container's change to the sums in `deltas`. A
/// container not in `states` starts empty, owned by its first record's account.
pub fn apply<'a>(
    states: &mut BTreeMap<String, ContainerState>,
    records: impl IntoIterator<Item = (i64, &'a NewRecord)>,
    deltas: &mut ContainerDeltas,
) {
    let mut by_container: BTreeMap<&str, Vec<(i64, &NewRecord)>> = BTreeMap::new();
    for (seq, r) in records {
        if let Some(c) = r.container_id.as_deref() {
            by_container.entry(c).or_default().push((seq, r));
        }
    }
    for (id, recs) in by_container {
        let state = states
            .entry(id.to_owned())
            .or_insert_with(|| ContainerState::new(recs.first().map_or("", |(_, r)| &r.account)));
        let before = state.contribution().map(|c| (c, state.attribution.clone()));
        for (seq, r) in recs {
            state.take_first(r.recorded_at, seq, || {
                r.attribution
                    .pairs()
                    .into_iter()
                    .map(|(dim, value)| (dim, value.to_owned()))
                    .collect()
            });
            state.add(
                r.recorded_at,
                r.started_at,
                r.web_tools_20260209 || r.refusal.is_some(),
            );
        }
        let after = state.contribution().map(|c| (c, state.attribution.clone()));
        if before == after {
            continue;
        }
        let account = &state.account;
        for (change, sign) in [(before, -1), (after, 1)] {
            let Some(((day, seconds), pairs)) = change else {
                continue;
            };
            deltas
                .days
                .entry((account.clone(), day))
                .or_default()
                .count(seconds, sign);
            for (dim, value) in pairs {
                deltas
                    .dims
                    .entry((dim, day, account.clone(), value))
                    .or_default()
                    .count(seconds, sign);
            }
        }
    }
}

/// The attribution as stored: a JSON array of `[dim, value]` pairs, or `''`
/// for none.
pub fn encode_attribution(pairs: &[Pair]) -> String {
    if pairs.is_empty() {
        String::new()
    } else {
        serde_json::to_string(pairs).unwrap_or_default()
    }
}

/// Read a stored attribution back (see [`encode_attribution`]), sorted.
pub fn decode_attribution(text: &str) -> Result<Vec<Pair>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut pairs: Vec<Pair> = serde_json::from_str(text)
        .map_err(|e| format!("attribution {text:?} is not a list of [dim, value] pairs: {e}"))?;
    pairs.sort_unstable();
    Ok(pairs)
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
