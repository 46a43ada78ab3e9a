//! Billing periods: calendar months in UTC.

use std::fmt;

use chrono::{Datelike, Months, NaiveDate};

use crate::time::{Micros, to_micros};

/// A calendar month in UTC, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    first: NaiveDate,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, String> {
        NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 7)
            .map(|first| Period { first })
            .ok_or_else(|| format!("{s:?} is not a period: expected YYYY-MM, e.g. 2025-05"))
    }

    pub fn of_day(day: NaiveDate) -> Period {
        Period {
            first: day.with_day(1).unwrap_or(day),
        }
    }

    pub fn first_day(&self) -> NaiveDate {
        self.first
    }

    /// The period's last day.
    pub fn last_day(&self) -> NaiveDate {
        self.end_day().pred_opt().unwrap_or(self.first)
    }

    /// The first day of the next period.
    pub fn end_day(&self) -> NaiveDate {
        self.first
            .checked_add_months(Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }

    pub fn next(&self) -> Period {
        Period {
            first: self.end_day(),
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        day >= self.first && day < self.end_day()
    }

    /// `[start, end)` in microseconds.
    pub fn bounds(&self) -> (Micros, Micros) {
        let at = |d: NaiveDate| to_micros(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        (at(self.first), at(self.end_day()))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}
