//! The container roll-up (migration 9): each container's execution time kept
//! as records arrive, and per account and day the sums container billing
//! needs, so a period's container time is billed without reading its records.
//!
//! The union of a container's intervals is kept as "closed" time plus the
//! last, still open interval. A record whose interval starts at or after the
//! open one's start extends it or closes it; one that starts earlier (records
//! out of order) would need the whole union again, so the container is marked
//! inexact and billing reads its records instead. So is a container with a
//! record that declared web tools: whether those records are billed depends
//! on the price book in force, which the roll-up cannot know.

use std::collections::BTreeMap;

use crate::record::{Micros, NewRecord, RecordKind};

/// Execution time under this many seconds is counted apart, so billed time
/// at this minimum is `execution + minimum × short − short seconds`. Price
/// books with another minimum are billed from the records.
pub const ROLLUP_MINIMUM_SECONDS: i64 = 300;

/// What the roll-up keeps of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub account: String,
    /// Earliest code-execution or file-preload record (None: none yet).
    pub first_at: Option<Micros>,
    pub open: Option<(Micros, Micros)>,
    pub closed_micros: i64,
    pub exact: bool,
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
            open: None,
            closed_micros: 0,
            exact: true,
        }
    }

    /// Execution time in whole seconds, rounded up.
    pub fn execution_seconds(&self) -> i64 {
        let open = self.open.map_or(0, |(s, e)| e - s);
        (self.closed_micros + open + 999_999).div_euclid(1_000_000)
    }

    /// This container's share of the day sums: (day, seconds), if exact.
    fn contribution(&self) -> Option<(i64, i64)> {
        let first = self.first_at?;
        self.exact
            .then(|| (first.div_euclid(86_400_000_000), self.execution_seconds()))
    }

    /// Take one more record of the container into account.
    pub fn add(&mut self, recorded_at: Micros, started_at: Option<Micros>, web_tools: bool) {
        if web_tools {
            self.exact = false;
        }
        self.first_at = Some(self.first_at.map_or(recorded_at, |f| f.min(recorded_at)));
        let Some(start) = started_at else {
            return;
        };
        let end = recorded_at;
        if end < start {
            self.exact = false;
            return;
        }
        self.open = match self.open {
            None => Some((start, end)),
            Some((s, _)) if start < s => {
                self.exact = false;
                self.open
            }
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                self.closed_micros += e - s;
                Some((start, end))
            }
        };
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
    for (id, mut recs) in by_container {
        // In order of start, so a batch that holds a container's records in
        // any order still extends the union exactly.
        recs.sort_by_key(|r| (r.started_at, r.recorded_at));
        let state = states
            .entry(id.to_owned())
            .or_insert_with(|| ContainerState::new(recs.first().map_or("", |r| &r.account)));
        let before = state.contribution();
        for r in recs {
            state.add(r.recorded_at, r.started_at, r.web_tools_20260209);
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
    fn in_order_intervals_make_the_union() {
        let mut c = ContainerState::new("a");
        c.add(100 * S, Some(10 * S), false);
        c.add(150 * S, Some(90 * S), false); // overlaps: [10, 150]
        c.add(400 * S, Some(300 * S), false); // a gap: closes 140 s
        c.add(350 * S, Some(310 * S), false); // inside the open one
        assert!(c.exact);
        assert_eq!(c.closed_micros, 140 * S);
        assert_eq!(c.open, Some((300 * S, 400 * S)));
        assert_eq!(c.execution_seconds(), 240);
        assert_eq!(c.first_at, Some(100 * S));
    }

    #[test]
    fn out_of_order_or_web_tools_make_it_inexact() {
        let mut c = ContainerState::new("a");
        c.add(100 * S, Some(50 * S), false);
        c.add(60 * S, Some(20 * S), false);
        assert!(!c.exact);
        let mut w = ContainerState::new("a");
        w.add(100 * S, None, true);
        assert!(!w.exact);
        // A record without a start only moves the first day.
        let mut n = ContainerState::new("a");
        n.add(100 * S, Some(90 * S), false);
        n.add(5 * S, None, false);
        assert!(n.exact);
        assert_eq!((n.first_at, n.execution_seconds()), (Some(5 * S), 10));
    }

    #[test]
    fn partial_seconds_round_up() {
        let mut c = ContainerState::new("a");
        c.add(S + 1, Some(0), false);
        assert_eq!(c.execution_seconds(), 2);
    }
}
