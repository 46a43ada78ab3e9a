//! Time, in one place. The ledger keeps every instant as UTC microseconds
//! since the Unix epoch ([`Micros`]): both databases store an integer, the SQL
//! is the same on both, and container intervals keep sub-second precision.
//! Billing buckets instants into UTC days, numbered from 1970-01-01 (day 0),
//! which is how the roll-ups are keyed.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// One UTC day in microseconds.
pub const MICROS_PER_DAY: Micros = 86_400_000_000;

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
        let t = parse_rfc3339("2025-05-23T23:59:59.999999+00:00").unwrap();
        assert_eq!(date_of(t), NaiveDate::from_ymd_opt(2025, 5, 23).unwrap());
        assert_eq!(day_number(t) + 1, day_number(t + 1));
        assert_eq!(day_number(-1), -1);
        assert_eq!(day_range(0, MICROS_PER_DAY * 3), (0, 3));
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
        let t = parse_rfc3339("2025-05-23T22:13:31.5+02:00").unwrap();
        assert_eq!(rfc3339(t), "2025-05-23T20:13:31.500Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Ok(t));
        assert!(parse_rfc3339("23 May").unwrap_err().contains("RFC 3339"));
    }
}
