//! Time, in one place. The ledger keeps every instant as UTC microseconds
//! since the Unix epoch ([`Micros`]): both databases store an integer, the SQL
//! is the same on both, and container intervals keep sub-second precision.
//! Billing buckets instants into UTC days, numbered from 1970-01-01 (day 0),
//! which is how the roll-ups are keyed.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeZone, Utc};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// One UTC day in microseconds.
pub const MICROS_PER_DAY: Micros = 86_400_000_000;

/// The oldest time a record may claim unless a backfill that old is asked
/// for (`--oldest`): 2000-01-01T00:00:00Z. An older one (year 0000, the
/// epoch) is a sender's mistake, not usage.
pub const EARLIEST: Micros = 946_684_800_000_000;

/// How far past the time it arrives a record may claim to be: a day of
/// clock skew. Later than that is a mistake too.
pub const MAX_AHEAD: Micros = MICROS_PER_DAY;

/// Why `t` is not a time a record may claim (between `oldest` and a day
/// after `now`), if it is not.
pub fn out_of_range(t: Micros, oldest: Micros, now: Micros) -> Option<String> {
    if t < oldest {
        Some(format!(
            "{} is before {}: a record that old is refused as a mistake (a backfill that old is allowed with --oldest)",
            rfc3339(t),
            rfc3339(oldest)
        ))
    } else if t > now.saturating_add(MAX_AHEAD) {
        Some(format!(
            "{} is more than a day after the time it was received ({}): is the sender's clock wrong?",
            rfc3339(t),
            rfc3339(now)
        ))
    } else {
        None
    }
}

/// The `--oldest YYYY-MM-DD` option: that day's start, UTC.
pub fn parse_oldest(day: &str) -> Result<Micros, String> {
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|e| format!("{day:?} is not a date ({e}); expected YYYY-MM-DD"))?;
    Ok(day_number_of_date(date) * MICROS_PER_DAY)
}

pub fn to_micros(t: DateTime<Utc>) -> Micros {
    t.timestamp_micros()
}

/// The instant; out-of-range values (never written by tally) read as the
/// earliest representable time rather than panicking.
pub fn from_micros(us: Micros) -> DateTime<Utc> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Now, as the ledger stores it.
pub fn now_micros() -> Micros {
    to_micros(Utc::now())
}

/// The UTC day number an instant falls on.
pub fn day_number(us: Micros) -> i64 {
    us.div_euclid(MICROS_PER_DAY)
}

/// The day numbers of a `[from, to)` range of whole days.
pub fn day_range(from: Micros, to: Micros) -> (i64, i64) {
    (day_number(from), day_number(to))
}

/// The UTC calendar date an instant falls on.
pub fn date_of(us: Micros) -> NaiveDate {
    from_micros(us).date_naive()
}

/// The UTC calendar date of a day number (None far outside chrono's range).
pub fn date_of_day_number(day: i64) -> Option<NaiveDate> {
    let days = i32::try_from(day).ok()?.checked_add(EPOCH_DAYS_FROM_CE)?;
    NaiveDate::from_num_days_from_ce_opt(days)
}

/// The day number of a UTC calendar date.
pub fn day_number_of_date(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
}

/// 1970-01-01 counted from 0001-01-01 (chrono's day 1).
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Merge `[s, e]` into a union of intervals kept as sorted, disjoint spans
/// (spans that touch are joined). Cheapest when spans arrive in order (the
/// merge then happens at the end); any order gives the same union.
pub fn merge_span(spans: &mut Vec<(Micros, Micros)>, (mut s, mut e): (Micros, Micros)) {
    // First span that ends at or after s, and first that starts after e.
    let lo = spans.partition_point(|&(_, end)| end < s);
    let hi = spans.partition_point(|&(start, _)| start <= e);
    if let (Some(first), Some(last)) = (spans.get(lo), hi.checked_sub(1).and_then(|i| spans.get(i)))
        && lo < hi
    {
        s = s.min(first.0);
        e = e.max(last.1);
    }
    spans.splice(lo..hi.max(lo), [(s, e)]);
}

/// The time a union of spans covers, in whole seconds rounded up.
pub fn covered_seconds(spans: &[(Micros, Micros)]) -> i64 {
    let micros: Micros = spans.iter().map(|(s, e)| e - s).sum();
    (micros + 999_999).div_euclid(1_000_000)
}

/// RFC 3339 in UTC with as many fractional digits as needed (`…Z`).
pub fn rfc3339(us: Micros) -> String {
    from_micros(us).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 with any offset, normalised to UTC microseconds.
pub fn parse_rfc3339(s: &str) -> Result<Micros, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| to_micros(t.with_timezone(&Utc)))
        .map_err(|e| {
            format!("{s:?} is not an RFC 3339 timestamp ({e}); expected e.g. 2025-05-23T20:13:31Z")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_floor_before_the_epoch() {
        let t = parse_rfc3339("2025-05-23T23:59:59.999999+00:00").expect("valid");
        assert_eq!(
            date_of(t),
            NaiveDate::from_ymd_opt(2025, 5, 23).expect("valid")
        );
        assert_eq!(day_number(t) + 1, day_number(t + 1));
        assert_eq!(day_number(-1), -1);
        assert_eq!(day_range(0, MICROS_PER_DAY * 3), (0, 3));
        assert_eq!(date_of_day_number(day_number(t)), Some(date_of(t)));
        assert_eq!(day_number_of_date(date_of(t)), day_number(t));
    }

    #[test]
    fn spans_merge_in_any_order() {
        let intervals = [(10, 20), (30, 40), (15, 32), (50, 60), (60, 61), (0, 1)];
        let mut forward = Vec::new();
        let mut backward = Vec::new();
        for i in intervals {
            merge_span(&mut forward, i);
        }
        for i in intervals.iter().rev() {
            merge_span(&mut backward, *i);
        }
        assert_eq!(forward, vec![(0, 1), (10, 40), (50, 61)]);
        assert_eq!(forward, backward);
        assert_eq!(covered_seconds(&forward), 1); // 42 µs round up to a second
        assert_eq!(covered_seconds(&[(0, 2_000_000)]), 2);
    }

    #[test]
    fn micros_round_trip() {
        let t = DateTime::parse_from_rfc3339("2025-05-23T20:13:31.749448Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(from_micros(to_micros(t)), t);
    }

    #[test]
    fn rfc3339_round_trips_and_normalises_offsets() {
        let t = parse_rfc3339("2025-05-23T22:13:31.5+02:00").expect("valid");
        assert_eq!(rfc3339(t), "2025-05-23T20:13:31.500Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Ok(t));
        assert!(
            parse_rfc3339("23 May")
                .expect_err("not RFC 3339")
                .contains("RFC 3339")
        );
    }
}
