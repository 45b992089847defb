//! Usage analytics over the pre-aggregated buckets (never the request log):
//! period boundaries in a time zone (hour, day, month), time series of any
//! subject set, top-N by cost over any range, and moka caches for answers
//! about closed hours (keyed by the store's past-write generation, so a late
//! write to a past hour invalidates them).
//!
//! Top-N over a range uses the store's monthly rankings: a subject's cost in
//! the range is at most its cost in the local months the range overlaps, so
//! candidates are visited by that bound, highest first, and the walk stops
//! once the bound falls below the n-th best exact cost (exact, and it reads
//! only as many subjects as the data needs).

use crate::domain::{AccountId, KeyId, NanoUsd, UsageSubject, UsageTotals};
use crate::store::{self, RankKind, RankedCost, Store};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::sync::Arc;

/// Most points one series may have (e.g. 93 days of hours).
pub const MAX_POINTS: usize = 2_300;
/// Most series one grouped query returns.
pub const MAX_GROUPS: usize = 100;

/// Width of a series point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Start of the local day (midnight, or the first instant after a DST gap).
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Some zones skip midnight on DST days; the day starts at the first
    // local time that exists.
    for _ in 0..4 {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.with_timezone(&Utc);
        }
        t += Duration::hours(1);
    }
    Utc.from_utc_datetime(&t)
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

fn next_month(date: NaiveDate) -> NaiveDate {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(date)
}

fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp();
    Utc.timestamp_opt(s - s.rem_euclid(3600), 0)
        .single()
        .unwrap_or(t)
}

/// The boundaries of the whole periods that overlap `[from, to)`: point `i`
/// covers `[b[i], b[i+1])`. Days and months are local to `tz`.
pub fn boundaries(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
    tz: Tz,
) -> Result<Vec<DateTime<Utc>>, Error> {
    if from >= to {
        return Err(Error::BadInput("`from` must be before `to`".into()));
    }
    let mut out = Vec::new();
    let push = |t: DateTime<Utc>, out: &mut Vec<DateTime<Utc>>| -> Result<(), Error> {
        out.push(t);
        if out.len() > MAX_POINTS + 1 {
            return Err(Error::BadInput(format!(
                "at most {MAX_POINTS} points per series: shorten the range or widen the granularity"
            )));
        }
        Ok(())
    };
    match granularity {
        Granularity::Hour => {
            let mut t = floor_hour(from);
            loop {
                push(t, &mut out)?;
                if t >= to {
                    break;
                }
                t += Duration::hours(1);
            }
        }
        Granularity::Day => {
            let mut d = from.with_timezone(&tz).date_naive();
            loop {
                let t = local_midnight(tz, d);
                push(t, &mut out)?;
                if t >= to {
                    break;
                }
                d = d
                    .succ_opt()
                    .ok_or_else(|| Error::BadInput("range too far".into()))?;
            }
        }
        Granularity::Month => {
            let mut d = first_of_month(from.with_timezone(&tz).date_naive());
            loop {
                let t = local_midnight(tz, d);
                push(t, &mut out)?;
                if t >= to {
                    break;
                }
                d = next_month(d);
            }
        }
    }
    Ok(out)
}

/// `[start, end)` of a period.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// `[start, end)` of the local day and month containing `now`.
pub fn today_and_month(now: DateTime<Utc>, tz: Tz) -> (Span, Span) {
    let date = now.with_timezone(&tz).date_naive();
    let day = (
        local_midnight(tz, date),
        local_midnight(tz, date.succ_opt().unwrap_or(date)),
    );
    let m = first_of_month(date);
    let month = (local_midnight(tz, m), local_midnight(tz, next_month(m)));
    (day, month)
}

/// The local months (`yyyymm`) that `[from, to)` overlaps, and whether the
/// range is exactly whole months.
fn months_of(from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz) -> (Vec<String>, bool) {
    let mut d = first_of_month(from.with_timezone(&tz).date_naive());
    let whole_start = local_midnight(tz, d) == from;
    let mut labels = Vec::new();
    let mut whole_end = false;
    // A guard against absurd ranges (9999 years): rankings are per month.
    while labels.len() < 1200 {
        let start = local_midnight(tz, d);
        if start >= to {
            break;
        }
        labels.push(format!("{:04}{:02}", d.year(), d.month()));
        let next = next_month(d);
        whole_end = local_midnight(tz, next) == to;
        d = next;
    }
    (labels, whole_start && whole_end)
}

/// A subject set: the filters turned into the buckets that hold them.
pub fn subjects(
    keys: &[KeyId],
    accounts: &[AccountId],
    models: &[String],
) -> Result<Vec<UsageSubject>, Error> {
    Ok(
        match (keys.is_empty(), accounts.is_empty(), models.is_empty()) {
            (true, true, true) => vec![UsageSubject::Global],
            (false, true, true) => keys.iter().map(|k| UsageSubject::Key(*k)).collect(),
            (true, false, true) => accounts.iter().map(|a| UsageSubject::Account(*a)).collect(),
            (true, true, false) => models
                .iter()
                .map(|m| UsageSubject::Model(m.clone()))
                .collect(),
            (false, true, false) => keys
                .iter()
                .flat_map(|k| models.iter().map(|m| UsageSubject::KeyModel(*k, m.clone())))
                .collect(),
            (true, false, false) => accounts
                .iter()
                .flat_map(|a| {
                    models
                        .iter()
                        .map(|m| UsageSubject::AccountModel(*a, m.clone()))
                })
                .collect(),
            (false, false, _) => {
                return Err(Error::BadInput(
                    "usage is not kept per key and account together: filter by keys or by accounts"
                        .into(),
                ))
            }
        },
    )
}

/// The analytics service: the store plus caches. Cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    store: Store,
    series_cache: moka::sync::Cache<String, Arc<Vec<UsageTotals>>>,
    top_cache: moka::sync::Cache<String, Arc<Vec<RankedCost>>>,
}

impl Analytics {
    pub fn new(store: Store) -> Analytics {
        Analytics {
            store,
            series_cache: cache(),
            top_cache: cache(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The zone days and months are computed in.
    pub fn time_zone(&self) -> Tz {
        self.store.analytics_time_zone()
    }

    /// Totals per point (between consecutive `bounds`) of the sum of `subjects`.
    /// Answers that end in closed hours are cached.
    pub fn series(
        &self,
        subjects: &[UsageSubject],
        bounds: &[DateTime<Utc>],
    ) -> Result<Arc<Vec<UsageTotals>>, Error> {
        let cacheable = bounds
            .last()
            .is_some_and(|end| *end <= store::closed_horizon(Utc::now()));
        let key = cacheable.then(|| {
            format!(
                "{}|{:?}|{}|{}|{}",
                self.store.usage_generation(),
                subjects,
                bounds.first().map_or(0, |t| t.timestamp()),
                bounds.last().map_or(0, |t| t.timestamp()),
                bounds.len()
            )
        });
        if let Some(hit) = key.as_ref().and_then(|k| self.series_cache.get(k)) {
            return Ok(hit);
        }
        let mut points = Vec::with_capacity(bounds.len().saturating_sub(1));
        for w in bounds.windows(2) {
            points.push(self.store.usage_total_of(subjects, Some((w[0], w[1])))?);
        }
        let points = Arc::new(points);
        if let Some(k) = key {
            self.series_cache.insert(k, points.clone());
        }
        Ok(points)
    }

    /// Totals of `subjects` over `[from, to)`.
    pub fn total(
        &self,
        subjects: &[UsageSubject],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<UsageTotals, Error> {
        Ok(self.store.usage_total_of(subjects, Some((from, to)))?)
    }

    /// The `n` subjects of `kind` with the highest cost over `[from, to)`
    /// (billed for keys and models, list for accounts), highest first.
    pub fn top(
        &self,
        kind: RankKind,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        n: usize,
    ) -> Result<Arc<Vec<RankedCost>>, Error> {
        if from >= to || n == 0 {
            return Ok(Arc::new(Vec::new()));
        }
        let tz = self.time_zone();
        let now = Utc::now();
        let (months, whole) = months_of(from, to, tz);
        // One whole month, or the current month so far (nothing lies after
        // now): the ranking itself is the answer.
        let (_, (month_start, month_end)) = today_and_month(now, tz);
        if months.len() == 1 && (whole || (from == month_start && to >= now && to <= month_end)) {
            return Ok(Arc::new(self.store.top_of_month(kind, &months[0], n)?));
        }
        let cacheable = to <= store::closed_horizon(now);
        let key = cacheable.then(|| {
            format!(
                "{}|{kind:?}|{}|{}|{n}|{}",
                self.store.usage_generation(),
                from.timestamp(),
                to.timestamp(),
                tz.name()
            )
        });
        if let Some(hit) = key.as_ref().and_then(|k| self.top_cache.get(k)) {
            return Ok(hit);
        }
        let costs = self.store.month_costs(kind, &months)?;
        let mut candidates: Vec<(String, NanoUsd)> = costs
            .iter()
            .map(|(id, &(b, l))| {
                let id = id.clone();
                let c = kind.sort_cost(b, l);
                (id, c)
            })
            .filter(|(_, c)| c.0 > 0)
            .collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let result = if whole {
            let mut out = Vec::with_capacity(n);
            for (id, _) in candidates.into_iter().take(n) {
                let (billed, list) = costs.get(&id).copied().unwrap_or_default();
                out.push(RankedCost { id, billed, list });
            }
            out
        } else {
            let mut best: Vec<RankedCost> = Vec::with_capacity(n + 1);
            for (id, bound) in candidates {
                if best.len() == n {
                    let nth = best
                        .last()
                        .map_or(NanoUsd::ZERO, |r| kind.sort_cost(r.billed, r.list));
                    if bound < nth {
                        break;
                    }
                }
                let Some(subject) = subject_of(kind, &id) else {
                    continue;
                };
                let t = self.store.usage_total(&subject, Some((from, to)))?;
                let c = kind.sort_cost(t.billed_cost, t.list_cost);
                if c.0 == 0 {
                    continue;
                }
                best.push(RankedCost {
                    id,
                    billed: t.billed_cost,
                    list: t.list_cost,
                });
                best.sort_by(|a, b| {
                    kind.sort_cost(b.billed, b.list)
                        .cmp(&kind.sort_cost(a.billed, a.list))
                        .then_with(|| a.id.cmp(&b.id))
                });
                best.truncate(n);
            }
            best
        };
        let result = Arc::new(result);
        if let Some(k) = key {
            self.top_cache.insert(k, result.clone());
        }
        Ok(result)
    }
}

/// A bounded cache; entries also expire, so a cache never outlives a
/// pricing or zone change by long.
fn cache<V: Clone + Send + Sync + 'static>() -> moka::sync::Cache<String, V> {
    moka::sync::Cache::builder()
        .max_capacity(4_096)
        .time_to_live(std::time::Duration::from_secs(600))
        .build()
}

/// The bucket subject of a ranking id.
pub fn subject_of(kind: RankKind, id: &str) -> Option<UsageSubject> {
    match kind {
        RankKind::Key => uuid::Uuid::parse_str(id)
            .ok()
            .map(|u| UsageSubject::Key(KeyId(u))),
        RankKind::Account => uuid::Uuid::parse_str(id)
            .ok()
            .map(|u| UsageSubject::Account(AccountId(u))),
        RankKind::Model => Some(UsageSubject::Model(id.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    #[test]
    fn day_boundaries_are_local_midnights_across_dst() {
        let tz = chrono_tz::Europe::Berlin;
        // DST starts 2025-03-30 (a 23-hour day).
        let b = boundaries(
            utc(2025, 3, 29, 12),
            utc(2025, 3, 31, 12),
            Granularity::Day,
            tz,
        )
        .unwrap();
        assert_eq!(
            b,
            vec![
                utc(2025, 3, 28, 23),
                utc(2025, 3, 29, 23),
                utc(2025, 3, 30, 22),
                utc(2025, 3, 31, 22)
            ]
        );
    }

    #[test]
    fn month_and_hour_boundaries() {
        let tz = chrono_tz::America::New_York;
        let b = boundaries(
            utc(2025, 1, 15, 0),
            utc(2025, 3, 1, 0),
            Granularity::Month,
            tz,
        )
        .unwrap();
        assert_eq!(
            b,
            vec![utc(2025, 1, 1, 5), utc(2025, 2, 1, 5), utc(2025, 3, 1, 5)]
        );
        let h = boundaries(
            utc(2025, 1, 1, 0) + Duration::minutes(30),
            utc(2025, 1, 1, 2),
            Granularity::Hour,
            tz,
        )
        .unwrap();
        assert_eq!(
            h,
            vec![utc(2025, 1, 1, 0), utc(2025, 1, 1, 1), utc(2025, 1, 1, 2)]
        );
        assert!(boundaries(
            utc(2020, 1, 1, 0),
            utc(2025, 1, 1, 0),
            Granularity::Hour,
            tz
        )
        .is_err());
        assert!(boundaries(utc(2025, 1, 1, 0), utc(2025, 1, 1, 0), Granularity::Day, tz).is_err());
    }

    #[test]
    fn months_of_a_range_and_whole_month_detection() {
        let tz = chrono_tz::UTC;
        let (m, whole) = months_of(utc(2025, 1, 1, 0), utc(2025, 3, 1, 0), tz);
        assert_eq!(m, vec!["202501", "202502"]);
        assert!(whole);
        let (m, whole) = months_of(utc(2025, 1, 2, 0), utc(2025, 2, 1, 0), tz);
        assert_eq!(m, vec!["202501"]);
        assert!(!whole);
    }

    #[test]
    fn cached_past_series_follow_a_late_write() {
        use crate::store::UsageBatch;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::StoreOptions {
            data_dir: dir.path().to_path_buf(),
            master_key: None,
            master_key_file: dir.path().join("master.key"),
            cache_capacity_bytes: 8 * 1024 * 1024,
        })
        .unwrap();
        let analytics = Analytics::new(store.clone());
        let hour = floor_hour(Utc::now()) - Duration::hours(5);
        let bounds = vec![hour, hour + Duration::hours(1)];
        let g = [UsageSubject::Global];
        let write = |n: u64, at: DateTime<Utc>| {
            store
                .apply_usage(&UsageBatch {
                    hourly: vec![(
                        UsageSubject::Global,
                        at,
                        UsageTotals {
                            requests: n,
                            ..UsageTotals::default()
                        },
                    )],
                    ..UsageBatch::default()
                })
                .unwrap();
        };
        write(2, hour);
        assert_eq!(analytics.series(&g, &bounds).unwrap()[0].requests, 2);
        // A write to the current hour leaves the closed answer cached and right.
        let before = store.usage_generation();
        write(1, Utc::now());
        assert_eq!(store.usage_generation(), before);
        assert_eq!(analytics.series(&g, &bounds).unwrap()[0].requests, 2);
        // A late write to that past hour invalidates it.
        write(3, hour);
        assert!(store.usage_generation() > before);
        assert_eq!(analytics.series(&g, &bounds).unwrap()[0].requests, 5);
    }

    #[test]
    fn subject_sets_follow_the_filters() {
        let k = KeyId::generate();
        let a = AccountId::generate();
        assert_eq!(subjects(&[], &[], &[]).unwrap(), vec![UsageSubject::Global]);
        assert_eq!(
            subjects(&[k], &[], &["m".into()]).unwrap(),
            vec![UsageSubject::KeyModel(k, "m".into())]
        );
        assert_eq!(
            subjects(&[], &[a], &["m".into()]).unwrap(),
            vec![UsageSubject::AccountModel(a, "m".into())]
        );
        assert!(subjects(&[k], &[a], &[]).is_err());
    }
}
