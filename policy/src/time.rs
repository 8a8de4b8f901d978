//! RFC 3339 timestamps for Cedar's `datetime` without a calendar dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns `time` as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds: time windows need
/// no finer, and a second's requests then share one Cedar value), its ISO day of
/// week (1 = Monday … 7 = Sunday) and its unix second. Times before 1970 are
/// clamped to the epoch.
pub(crate) fn rfc3339(time: SystemTime) -> (String, i64, i64) {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX / 2000))
        .unwrap_or(0);
    let millis = seconds * 1000;
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let second_of_minute = in_day / 1000 % 60;
    // 1970-01-01 was a Thursday (ISO 4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    (
        format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{second_of_minute:02}Z"),
        weekday,
        seconds,
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_utc_seconds_and_iso_weekday() {
        let time = UNIX_EPOCH + Duration::from_millis(1_764_694_800_123); // 2025-12-02 17:00:00.123
        assert_eq!(
            rfc3339(time),
            ("2025-12-02T17:00:00Z".to_owned(), 2, 1_764_694_800)
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH),
            ("1970-01-01T00:00:00Z".to_owned(), 4, 0)
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap).0, "2000-02-29T00:00:00Z");
    }
}
