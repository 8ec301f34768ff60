//! When a scheduled job runs: a fixed interval (`every 15m`) or a cron expression.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// `every <duration>` (humantime: `30s`, `15m`, `1h 30m`) or a cron expression with
    /// seconds (`0 */15 * * * *`).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("every ") {
            let d = humantime::parse_duration(rest.trim()).map_err(|e| format!("{text:?}: {e}"))?;
            if d < Duration::from_secs(1) {
                return Err(format!(
                    "{text:?}: the interval must be at least one second"
                ));
            }
            return Ok(Schedule::Every(d));
        }
        cron::Schedule::from_str(text)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| {
                format!("{text:?} is neither \"every <duration>\" nor a cron expression: {e}")
            })
    }

    /// The first run strictly after `after` (for `Every`, `after` is the last run).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
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
}
