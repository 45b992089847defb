//! Pure placement of one CRS counter series (a key × model, or an account)
//! onto UTC hours. CRS keeps the same counts at several granularities with
//! different lifetimes: lifetime (no TTL) ⊇ months (365 d) ⊇ days (32 d) ⊇
//! hours (7 d), each named in CRS's fixed UTC offset. Hours still present are
//! placed exactly; what a day holds beyond its surviving hours is placed at
//! the day's local noon (so it lands on the same date in UTC and in CRS's
//! zone for offsets between -11 and +12); a month's remainder at its first
//! day's noon; the lifetime remainder at the series' start. Totals therefore
//! always equal CRS's lifetime counters, and only the placement of expired
//! detail is approximate (the skew is at most a day for day remainders).
//!
//! Reruns import only what is new: buckets named before the previous run's
//! cutoff are skipped, and buckets from the cutoff on count minus what the
//! previous run saw in them (its checkpoint).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One bucket's counters (integers, as CRS stores them; costs in micro-USD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cache_create: u64,
    pub cache_read: u64,
    pub ephemeral_1h: u64,
    pub real_micro: u64,
    pub rated_micro: u64,
}

impl Counters {
    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    fn zip(self, o: Counters, f: impl Fn(u64, u64) -> u64) -> Counters {
        Counters {
            requests: f(self.requests, o.requests),
            input: f(self.input, o.input),
            output: f(self.output, o.output),
            cache_create: f(self.cache_create, o.cache_create),
            cache_read: f(self.cache_read, o.cache_read),
            ephemeral_1h: f(self.ephemeral_1h, o.ephemeral_1h),
            real_micro: f(self.real_micro, o.real_micro),
            rated_micro: f(self.rated_micro, o.rated_micro),
        }
    }

    pub fn add(self, o: Counters) -> Counters {
        self.zip(o, u64::saturating_add)
    }

    pub fn sub(self, o: Counters) -> Counters {
        self.zip(o, u64::saturating_sub)
    }

    pub fn max(self, o: Counters) -> Counters {
        self.zip(o, u64::max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    Month,
    Day,
    Hour,
}

/// The previous run's cutoff, as CRS bucket names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cutoff {
    pub at: DateTime<Utc>,
    pub month: String,
    pub day: String,
    pub hour: String,
}

impl Cutoff {
    pub fn at(at: DateTime<Utc>, offset: FixedOffset) -> Cutoff {
        let local = at.with_timezone(&offset);
        Cutoff {
            at,
            month: local.format("%Y-%m").to_string(),
            day: local.format("%Y-%m-%d").to_string(),
            hour: local.format("%Y-%m-%d:%H").to_string(),
        }
    }

    fn label(&self, level: Level) -> &str {
        match level {
            Level::Month => &self.month,
            Level::Day => &self.day,
            Level::Hour => &self.hour,
        }
    }
}

/// What a run saw of one series: its lifetime counters and the buckets at
/// or after the run's own cutoff (those may still grow).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    pub all: Counters,
    pub open: BTreeMap<String, Counters>,
}

/// One series as read from CRS.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub all: Counters,
    pub months: BTreeMap<String, Counters>,
    pub days: BTreeMap<String, Counters>,
    pub hours: BTreeMap<String, Counters>,
}

fn open_key(level: Level, label: &str) -> String {
    format!("{level:?}:{label}")
}

impl Series {
    /// This run's checkpoint (buckets at or after `cutoff`).
    pub fn checkpoint(&self, cutoff: &Cutoff) -> Checkpoint {
        let mut open = BTreeMap::new();
        for (level, map) in [
            (Level::Month, &self.months),
            (Level::Day, &self.days),
            (Level::Hour, &self.hours),
        ] {
            for (label, c) in map.range(cutoff.label(level).to_string()..) {
                open.insert(open_key(level, label), *c);
            }
        }
        Checkpoint {
            all: self.all,
            open,
        }
    }
}

/// Where the series' remainders go and what was imported before.
pub struct Placement<'a> {
    pub offset: FixedOffset,
    /// Previous cutoff and checkpoint; None on the first import.
    pub prev: Option<(&'a Cutoff, &'a Checkpoint)>,
    /// Where a lifetime remainder goes on a first import (e.g. the key's creation).
    pub start: DateTime<Utc>,
    /// Nothing is placed after this hour (the run's start).
    pub now: DateTime<Utc>,
}

/// Parses a CRS local bucket name to the UTC instant of its placement hour.
fn instant(label: &str, level: Level, offset: FixedOffset) -> Option<DateTime<Utc>> {
    let naive = match level {
        Level::Hour => {
            NaiveDateTime::parse_from_str(&format!("{label}:00"), "%Y-%m-%d:%H:%M").ok()?
        }
        Level::Day => NaiveDate::parse_from_str(label, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(12, 0, 0)?,
        Level::Month => NaiveDate::parse_from_str(&format!("{label}-01"), "%Y-%m-%d")
            .ok()?
            .and_hms_opt(12, 0, 0)?,
    };
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn parent_label(label: &str, of: Level) -> &str {
    let n = match of {
        Level::Month => 7,
        Level::Day => 10,
        Level::Hour => label.len(),
    };
    label.get(..n).unwrap_or(label)
}

fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp();
    Utc.timestamp_opt(secs - secs.rem_euclid(3600), 0)
        .single()
        .unwrap_or(t)
}

impl Placement<'_> {
    fn is_new(&self, level: Level, label: &str, value: Counters) -> Option<Counters> {
        match self.prev {
            None => Some(value),
            Some((cutoff, _)) if label < cutoff.label(level) => None,
            Some((_, cp)) => Some(
                value.sub(
                    cp.open
                        .get(&open_key(level, label))
                        .copied()
                        .unwrap_or_default(),
                ),
            ),
        }
    }

    /// Clamped between the previous cutoff's hour and now.
    fn clamp(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let lo = self.prev.map(|(c, _)| floor_hour(c.at));
        let t = lo.map_or(t, |lo| t.max(lo));
        floor_hour(t.min(self.now))
    }

    /// The new counts of `series`, as (UTC hour, counters), merged per hour.
    pub fn place(&self, series: &Series) -> Vec<(DateTime<Utc>, Counters)> {
        let mut out: BTreeMap<DateTime<Utc>, Counters> = BTreeMap::new();
        let mut put = |t: DateTime<Utc>, c: Counters| {
            if !c.is_zero() {
                let e = out.entry(self.clamp(t)).or_default();
                *e = e.add(c);
            }
        };
        // Hours, exactly.
        let mut day_children: BTreeMap<String, Counters> = BTreeMap::new();
        for (label, v) in &series.hours {
            let (Some(c), Some(t)) = (
                self.is_new(Level::Hour, label, *v),
                instant(label, Level::Hour, self.offset),
            ) else {
                continue;
            };
            put(t, c);
            let d = day_children
                .entry(parent_label(label, Level::Day).to_string())
                .or_default();
            *d = d.add(c);
        }
        // Days: what their surviving hours do not explain.
        let mut month_children: BTreeMap<String, Counters> = BTreeMap::new();
        let mut day_labels: Vec<String> = series.days.keys().cloned().collect();
        day_labels.extend(day_children.keys().cloned());
        day_labels.sort();
        day_labels.dedup();
        for label in day_labels {
            let children = day_children.get(&label).copied().unwrap_or_default();
            let own = match series.days.get(&label) {
                Some(v) => self.is_new(Level::Day, &label, *v),
                None => Some(Counters::default()),
            };
            let Some(own) = own else { continue };
            let effective = own.max(children);
            if let Some(t) = instant(&label, Level::Day, self.offset) {
                put(t, effective.sub(children));
            }
            let m = month_children
                .entry(parent_label(&label, Level::Month).to_string())
                .or_default();
            *m = m.add(effective);
        }
        // Months: what their days do not explain.
        let mut months_total = Counters::default();
        let mut month_labels: Vec<String> = series.months.keys().cloned().collect();
        month_labels.extend(month_children.keys().cloned());
        month_labels.sort();
        month_labels.dedup();
        for label in month_labels {
            let children = month_children.get(&label).copied().unwrap_or_default();
            let own = match series.months.get(&label) {
                Some(v) => self.is_new(Level::Month, &label, *v),
                None => Some(Counters::default()),
            };
            let Some(own) = own else { continue };
            let effective = own.max(children);
            if let Some(t) = instant(&label, Level::Month, self.offset) {
                put(t, effective.sub(children));
            }
            months_total = months_total.add(effective);
        }
        // Lifetime: what no surviving month explains.
        let all_new = match self.prev {
            None => series.all,
            Some((_, cp)) => series.all.sub(cp.all),
        };
        let rest = all_new.max(months_total).sub(months_total);
        let at = match self.prev {
            None => self.start,
            Some((c, _)) => c.at,
        };
        put(at, rest);
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(requests: u64, input: u64) -> Counters {
        Counters {
            requests,
            input,
            rated_micro: requests * 10,
            ..Counters::default()
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn plus8() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn sum(p: &[(DateTime<Utc>, Counters)]) -> Counters {
        p.iter().fold(Counters::default(), |a, (_, c)| a.add(*c))
    }

    fn series() -> Series {
        let mut s = Series {
            all: c(20, 200),
            ..Series::default()
        };
        s.months.insert("2026-10".into(), c(5, 50));
        s.months.insert("2026-11".into(), c(12, 120));
        s.days.insert("2026-11-20".into(), c(4, 40)); // hours expired
        s.days.insert("2026-11-26".into(), c(8, 80));
        s.hours.insert("2026-11-26:23".into(), c(6, 60));
        s.hours.insert("2026-11-26:22".into(), c(2, 20));
        s
    }

    #[test]
    fn first_import_keeps_lifetime_totals_and_places_hours_exactly() {
        let s = series();
        let p = Placement {
            offset: plus8(),
            prev: None,
            start: utc("2026-01-01T00:00:00Z"),
            now: utc("2026-11-27T01:00:00Z"),
        };
        let placed = p.place(&s);
        assert_eq!(sum(&placed), s.all, "totals are CRS's lifetime counters");
        let at = |t: &str| {
            placed
                .iter()
                .find(|(h, _)| *h == utc(t))
                .map(|(_, c)| c.requests)
        };
        assert_eq!(
            at("2026-11-26T15:00:00Z"),
            Some(6),
            "local 23:00 = 15:00 UTC"
        );
        assert_eq!(at("2026-11-26T14:00:00Z"), Some(2));
        assert_eq!(
            at("2026-11-20T04:00:00Z"),
            Some(4),
            "a day at its local noon"
        );
        assert_eq!(
            at("2026-10-01T04:00:00Z"),
            Some(5),
            "a month at its first noon"
        );
        assert_eq!(
            at("2026-11-01T04:00:00Z"),
            None,
            "November is explained by its days"
        );
        assert_eq!(
            at("2026-01-01T00:00:00Z"),
            Some(3),
            "the lifetime rest at the start"
        );
    }

    #[test]
    fn rerun_imports_only_what_is_new() {
        let first = series();
        let cutoff = Cutoff::at(utc("2026-11-26T15:30:00Z"), plus8()); // local 23:30
        assert_eq!(cutoff.hour, "2026-11-26:23");
        let cp = first.checkpoint(&cutoff);
        // Same data again: nothing new.
        let p = Placement {
            offset: plus8(),
            prev: Some((&cutoff, &cp)),
            start: utc("2026-01-01T00:00:00Z"),
            now: utc("2026-11-27T02:00:00Z"),
        };
        assert!(p.place(&first).is_empty());
        // Three more requests in the open hour and one in the next.
        let mut later = first.clone();
        later.all = later.all.add(c(4, 40));
        for (map, label) in [
            (&mut later.months, "2026-11"),
            (&mut later.days, "2026-11-26"),
        ] {
            let e = map.get_mut(label).unwrap();
            *e = e.add(c(3, 30));
        }
        let h = later.hours.get_mut("2026-11-26:23").unwrap();
        *h = h.add(c(3, 30));
        later.months.insert("2026-12".into(), c(1, 10));
        later.days.insert("2026-12-01".into(), c(1, 10));
        later.hours.insert("2026-12-01:00".into(), c(1, 10));
        let placed = p.place(&later);
        assert_eq!(sum(&placed), c(4, 40));
        assert_eq!(placed[0], (utc("2026-11-26T15:00:00Z"), c(3, 30)));
    }
}
