//! What a bucket allows: a sustained rate and a burst, as GCRA parameters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A sustained rate, written `n/second`, `n/minute`, `n/hour` or `n/day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate {
    count: u32,
    period: Duration,
}

/// A bucket's limits: `rate` sustained, with up to `burst` calls at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval: Duration,
    tolerance: Duration,
}

impl Rate {
    /// Returns `count` calls per `period`; `None` when either is zero.
    pub fn new(count: u32, period: Duration) -> Option<Self> {
        (count > 0 && !period.is_zero()).then_some(Self { count, period })
    }

    /// Returns how many calls the rate allows per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Returns the period the count is spread over.
    pub fn period(&self) -> Duration {
        self.period
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed =
            || format!("`{text}` is not a rate: write n/second, n/minute, n/hour or n/day");
        let (count, unit) = text.split_once('/').ok_or_else(malformed)?;
        let count: u32 = count.trim().parse().map_err(|_| malformed())?;
        let period = match unit.trim() {
            "second" | "s" => Duration::from_secs(1),
            "minute" | "m" => Duration::from_secs(60),
            "hour" | "h" => Duration::from_secs(3600),
            "day" | "d" => Duration::from_secs(86_400),
            _ => return Err(malformed()),
        };
        Self::new(count, period)
            .ok_or_else(|| format!("`{text}` allows no calls: the count must be at least 1"))
    }
}

impl TryFrom<String> for Rate {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            86_400 => "day",
            _ => return write!(formatter, "{}/{:?}", self.count, self.period),
        };
        write!(formatter, "{}/{unit}", self.count)
    }
}

impl Quota {
    /// Returns the quota of `rate` with `burst` calls allowed at once; `None` when `burst` is 0.
    ///
    /// In GCRA terms the emission interval is `period / count` and the tolerance is `burst`
    /// intervals, so a fresh bucket admits exactly `burst` calls before pacing to the rate.
    pub fn new(rate: Rate, burst: u32) -> Option<Self> {
        if burst == 0 {
            return None;
        }
        let interval = rate.period / rate.count;
        Some(Self {
            interval,
            tolerance: interval.saturating_mul(burst),
        })
    }

    /// Returns the time one call costs: the emission interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Returns how far ahead of the present a bucket may be booked: `burst` intervals.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_unit() {
        for (text, period) in [
            ("5/second", 1),
            ("60/minute", 60),
            ("1000/hour", 3600),
            ("7/day", 86_400),
        ] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.period(), Duration::from_secs(period), "{text}");
            assert_eq!(rate.to_string(), text);
        }
    }

    #[test]
    fn a_malformed_or_empty_rate_is_refused_with_the_expected_form() {
        for text in ["60", "60/fortnight", "x/minute", "-1/second"] {
            let error = text.parse::<Rate>().unwrap_err();
            assert!(error.contains("n/second"), "{text}: {error}");
        }
        let error = "0/minute".parse::<Rate>().unwrap_err();
        assert!(error.contains("at least 1"), "{error}");
    }

    #[test]
    fn the_quota_books_burst_intervals_ahead() {
        let quota = Quota::new("60/minute".parse().unwrap(), 10).unwrap();
        assert_eq!(quota.interval(), Duration::from_secs(1));
        assert_eq!(quota.tolerance(), Duration::from_secs(10));
        assert_eq!(Quota::new("1/second".parse().unwrap(), 0), None);
    }
}
