//! `GET /api/v1/stats`: what the admin page's charts draw, from data ucbridge already
//! records — the last directory-sync runs (duration, changes), the last snapshot and
//! voicemail job runs (duration), and this node's AXL calls, AXL throttles and voicemail
//! lag per minute.
//!
//! The per-minute series are sampled once a minute from the process's Prometheus counters
//! ([`sample_every_minute`], started with the server) into a ring of at most 24 hours: they
//! are per node, in memory, and start empty after a restart. Every read is bounded: a time
//! window of at most 30 days and at most 200 runs per series.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use ucbridge_store::stats::{JobRunPoint, SyncRunPoint};

use super::*;

/// Runs per series unless the query says otherwise, and at most.
const DEFAULT_RUNS: i64 = 50;
const MAX_RUNS: i64 = 200;
/// Window of the run series unless the query says otherwise (7 days), and at most (30).
const DEFAULT_HOURS: i64 = 24 * 7;
const MAX_HOURS: i64 = 24 * 30;
/// Minutes kept in the per-minute ring: 24 hours.
const RING_MINUTES: usize = 24 * 60;
const SAMPLE_EVERY: Duration = Duration::from_secs(60);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// Runs per series, newest kept (1–200, default 50).
    runs: Option<i64>,
    /// Only runs started in the last this many hours (1–720, default 168); the
    /// per-minute series cover at most the last 24 hours whatever this says.
    hours: Option<i64>,
}

/// The admin page's chart data.
#[derive(Serialize, ToSchema)]
pub struct StatsView {
    /// Start of the window of the run series (epoch ms).
    pub since: i64,
    /// Most runs returned per series.
    pub runs_limit: i64,
    /// Finished directory-sync runs (dry runs included), oldest first.
    pub sync_runs: Vec<SyncRunStat>,
    /// Finished runs of the `snapshot` job (each "Run now" is one full refresh; the
    /// refreshes the continuous keeper does by itself are not recorded per refresh).
    pub snapshot_runs: Vec<JobRunStat>,
    /// Finished runs of the `voicemail` job ("Run now": one pass over every mailbox).
    pub voicemail_runs: Vec<JobRunStat>,
    /// This node's per-minute series.
    pub minutes: MinuteSeries,
}

/// One directory-sync run.
#[derive(Serialize, ToSchema)]
pub struct SyncRunStat {
    pub id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: String,
    pub dry_run: bool,
    /// Users created, updated, disabled and deleted (planned, for a dry run).
    pub creates: i64,
    pub updates: i64,
    pub disables: i64,
    pub deletes: i64,
    pub errors: i64,
}

/// One job run.
#[derive(Serialize, ToSchema)]
pub struct JobRunStat {
    pub id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: String,
    /// `manual` or `schedule`.
    pub trigger: String,
}

/// Per-minute counts of this node since its start (at most 24 hours), oldest first.
#[derive(Serialize, ToSchema)]
pub struct MinuteSeries {
    /// The node these counts are from (other nodes keep their own).
    pub node: String,
    pub points: Vec<MinutePoint>,
}

/// One minute on this node.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct MinutePoint {
    /// End of the minute (epoch ms); for the last point, the time of the request.
    pub at: i64,
    /// The minute still running (the last point): counts so far.
    pub partial: bool,
    /// AXL calls made (retries not counted again).
    pub axl_calls: u64,
    /// AXL answers that were CUCM's throttle (HTTP 503 or the memory throttle).
    pub axl_throttled: u64,
    /// Voicemails whose CUC-to-IMAP lag was measured, and their mean lag (ms).
    pub voicemail_events: u64,
    pub voicemail_lag_ms: Option<f64>,
}

impl From<SyncRunPoint> for SyncRunStat {
    fn from(p: SyncRunPoint) -> Self {
        SyncRunStat {
            id: p.id,
            started_at: p.started_at,
            duration_ms: p.duration_ms,
            status: p.status,
            dry_run: p.dry_run,
            creates: p.creates,
            updates: p.updates,
            disables: p.disables,
            deletes: p.deletes,
            errors: p.errors,
        }
    }
}

impl From<JobRunPoint> for JobRunStat {
    fn from(p: JobRunPoint) -> Self {
        JobRunStat {
            id: p.id,
            started_at: p.started_at,
            duration_ms: p.duration_ms,
            status: p.status,
            trigger: p.trigger,
        }
    }
}

/// Chart data: the last runs of directory sync, the snapshot and voicemail jobs, and this
/// node's per-minute AXL and voicemail counts.
#[utoipa::path(get, path = "/api/v1/stats", params(StatsQuery), responses((status = 200, body = StatsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_stats(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<StatsView> {
    let runs = bounded("runs", q.runs, DEFAULT_RUNS, MAX_RUNS)?;
    let hours = bounded("hours", q.hours, DEFAULT_HOURS, MAX_HOURS)?;
    let now = state.store.db_now().await?;
    let since = now - hours * 3_600_000;
    let store = &state.store;
    let sync_runs = store
        .sync_run_points(ucbridge_sync::directory::RUN_KIND, since, runs)
        .await?;
    let snapshot_runs = store.job_run_points("snapshot", None, since, runs).await?;
    let voicemail_runs = store.job_run_points("voicemail", None, since, runs).await?;
    let points = minute_points(&state.metrics, now_millis(), hours);
    Ok(Json(StatsView {
        since,
        runs_limit: runs,
        sync_runs: sync_runs.into_iter().map(Into::into).collect(),
        snapshot_runs: snapshot_runs.into_iter().map(Into::into).collect(),
        voicemail_runs: voicemail_runs.into_iter().map(Into::into).collect(),
        minutes: MinuteSeries {
            node: state.scheduler.node().to_owned(),
            points,
        },
    }))
}

fn bounded(name: &str, value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::bad_request(format!(
            "{name} must be between 1 and {max}, not {v}"
        ))),
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// --- the per-minute ring ------------------------------------------------------------------

/// Running totals read from the Prometheus text at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    axl_calls: f64,
    axl_throttled: f64,
    lag_sum_seconds: f64,
    lag_count: f64,
}

impl Totals {
    /// Sum every series of the counters the charts use (any labels) from `/metrics` text.
    fn parse(text: &str) -> Totals {
        let mut t = Totals::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            match name {
                "ucbridge_axl_requests_total" => t.axl_calls += value,
                "ucbridge_axl_throttled_total" => t.axl_throttled += value,
                "ucbridge_voicemail_lag_seconds_sum" => t.lag_sum_seconds += value,
                "ucbridge_voicemail_lag_seconds_count" => t.lag_count += value,
                _ => {}
            }
        }
        t
    }

    /// What happened between `earlier` and `self`, ending at `at`.
    fn since(&self, earlier: &Totals, at: i64, partial: bool) -> MinutePoint {
        let delta = |now: f64, then: f64| (now - then).max(0.0);
        let events = delta(self.lag_count, earlier.lag_count);
        let lag = delta(self.lag_sum_seconds, earlier.lag_sum_seconds);
        MinutePoint {
            at,
            partial,
            axl_calls: delta(self.axl_calls, earlier.axl_calls).round() as u64,
            axl_throttled: delta(self.axl_throttled, earlier.axl_throttled).round() as u64,
            voicemail_events: events.round() as u64,
            voicemail_lag_ms: (events > 0.0).then(|| lag / events * 1000.0),
        }
    }
}

/// The last sample's totals and the minutes before it (at most [`RING_MINUTES`]).
#[derive(Default)]
struct Ring {
    last: Option<(i64, Totals)>,
    points: VecDeque<MinutePoint>,
}

impl Ring {
    fn sample(&mut self, totals: Totals, at: i64) {
        if let Some((_, last)) = &self.last {
            if self.points.len() == RING_MINUTES {
                self.points.pop_front();
            }
            self.points.push_back(totals.since(last, at, false));
        }
        self.last = Some((at, totals));
    }
}

/// One ring per process, like the Prometheus recorder it samples.
fn ring() -> &'static Mutex<Ring> {
    static RING: OnceLock<Mutex<Ring>> = OnceLock::new();
    RING.get_or_init(Default::default)
}

/// The ring's minutes within the last `hours`, then the running minute so far.
fn minute_points(metrics: &PrometheusHandle, now: i64, hours: i64) -> Vec<MinutePoint> {
    let totals = Totals::parse(&metrics.render());
    let mut ring = ring().lock().unwrap_or_else(|e| e.into_inner());
    let Some((_, last)) = ring.last else {
        // Nothing sampled yet (no sampler in this process): this request is the baseline.
        ring.sample(totals, now);
        return Vec::new();
    };
    let from = now - hours.min(24) * 3_600_000;
    let mut points: Vec<MinutePoint> = ring
        .points
        .iter()
        .filter(|p| p.at >= from)
        .cloned()
        .collect();
    points.push(totals.since(&last, now, true));
    points
}

/// Sample the counters into the ring once a minute until `stop` (one sampler per process;
/// a second server in the same process shares the first one's).
pub(crate) async fn sample_every_minute(metrics: PrometheusHandle, stop: CancellationToken) {
    static RUNNING: AtomicBool = AtomicBool::new(false);
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let totals = Totals::parse(&metrics.render());
                ring().lock().unwrap_or_else(|e| e.into_inner()).sample(totals, now_millis());
            }
        }
    }
    RUNNING.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE ucbridge_axl_requests_total counter\n\
        ucbridge_axl_requests_total{operation=\"listUser\",outcome=\"ok\"} 7\n\
        ucbridge_axl_requests_total{operation=\"getUser\",outcome=\"fault\"} 3\n\
        ucbridge_axl_throttled_total{operation=\"listUser\"} 2\n\
        ucbridge_axl_requests_total_other 100\n\
        ucbridge_voicemail_lag_seconds_sum 3.5\n\
        ucbridge_voicemail_lag_seconds_count 2\n";

    #[test]
    fn totals_sum_every_series_of_a_counter_and_nothing_else() {
        let t = Totals::parse(TEXT);
        assert_eq!(t.axl_calls, 10.0);
        assert_eq!(t.axl_throttled, 2.0);
        assert_eq!((t.lag_sum_seconds, t.lag_count), (3.5, 2.0));
    }

    #[test]
    fn the_ring_keeps_deltas_per_minute_and_at_most_a_day() {
        let mut ring = Ring::default();
        let mut totals = Totals::default();
        ring.sample(totals, 0);
        assert!(ring.points.is_empty(), "the first sample is the baseline");
        for minute in 1..=(RING_MINUTES as i64 + 5) {
            totals.axl_calls += 4.0;
            ring.sample(totals, minute * 60_000);
        }
        assert_eq!(ring.points.len(), RING_MINUTES);
        assert!(ring.points.iter().all(|p| p.axl_calls == 4 && !p.partial));
        assert_eq!(ring.points.front().map(|p| p.at), Some(6 * 60_000));
        let lagged = Totals::parse(TEXT).since(&Totals::default(), 1, true);
        assert_eq!(lagged.voicemail_lag_ms, Some(1750.0));
    }
}
