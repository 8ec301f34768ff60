//! When a scheduled job runs: a fixed interval (`every 15m`) or a cron expression.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest accepted interval. Longer ones are surely mistakes, and `every
/// 99999999999d` overflowed the date arithmetic (a panic: the API dropped the connection,
/// `serve` exited with 101).
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The longest accepted schedule text (a cron expression is well under 200 characters).
const MAX_TEXT: usize = 256;

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// `every <duration>` (humantime: `30s`, `15m`, `1h 30m`; from one second to 366
    /// days) or a cron expression with seconds (`0 */15 * * * *`) that has a next time.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if text.len() > MAX_TEXT {
            return Err(format!(
                "a schedule is at most {MAX_TEXT} characters, this one has {}",
                text.len()
            ));
        }
        if let Some(rest) = text.strip_prefix("every ") {
            let d = humantime::parse_duration(rest.trim()).map_err(|e| format!("{text:?}: {e}"))?;
            if d < Duration::from_secs(1) {
                return Err(format!(
                    "{text:?}: the interval must be at least one second"
                ));
            }
            if d > MAX_INTERVAL {
                return Err(format!(
                    "{text:?}: the interval must be at most 366 days (use a cron expression for yearly runs)"
                ));
            }
            return Ok(Schedule::Every(d));
        }
        let cron = cron::Schedule::from_str(text).map_err(|e| {
            format!("{text:?} is neither \"every <duration>\" nor a cron expression: {e}")
        })?;
        let schedule = Schedule::Cron(Box::new(cron));
        // A valid expression that never fires (e.g. a past year) would leave the job
        // silently unscheduled.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(format!("{text:?} has no future run time"));
        }
        Ok(schedule)
    }

    /// The first run strictly after `after` (for `Every`, `after` is the last run);
    /// `None` when there is none within the representable dates.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Schedule::Cron(c) => c.after(&after).next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_intervals_and_cron() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 7, 0).unwrap();
        let every = Schedule::parse("every 15m").unwrap();
        assert_eq!(every.next_after(t), Some(t + chrono::Duration::minutes(15)));
        let cron = Schedule::parse("0 */15 * * * *").unwrap();
        assert_eq!(
            cron.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 10, 15, 0).unwrap())
        );
        assert!(Schedule::parse("every 0s").is_err());
        assert!(Schedule::parse("sometimes").is_err());
    }

    /// Issue 18: `every 99999999999d` panicked in the date arithmetic.
    #[test]
    fn huge_intervals_are_refused_not_a_panic() {
        let err = Schedule::parse("every 99999999999d").unwrap_err();
        assert!(err.contains("at most 366 days"), "{err}");
        assert!(Schedule::parse("every 367d").is_err());
        assert!(Schedule::parse("every 366d").is_ok());
        // Even a huge interval built directly has no next time instead of a panic.
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 7, 0).unwrap();
        let huge = Schedule::Every(Duration::from_secs(99_999_999_999 * 86_400));
        assert_eq!(huge.next_after(t), None);
        assert_eq!(huge.next_after(DateTime::<Utc>::MAX_UTC), None);
    }

    #[test]
    fn cron_without_a_future_and_endless_text_are_refused() {
        let err = Schedule::parse("0 0 0 1 1 * 2001").unwrap_err();
        assert!(err.contains("no future run time"), "{err}");
        let long = format!("every {}s", "1".repeat(300));
        assert!(Schedule::parse(&long).unwrap_err().contains("at most"));
    }
}
