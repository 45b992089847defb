//! Usage history: CRS's per key × model counters (`usage:{K}:model:
//! {alltime|monthly|daily|hourly}:{M}[:{label}]`) and per-account counters
//! (`account_usage:[{monthly|daily|hourly}:]{A}[:{label}]`) placed onto our
//! hourly buckets through [`Store::apply_usage`] (see `series.rs` for how),
//! for the key, key × model, model, global and account subjects. Only what
//! is new since the previous run's cutoff is imported; checkpoints are kept
//! per series in the store's import blobs. Budget counters (total, and the
//! current day and week for keys with CRS budgets) are seeded from the same
//! placements, so limits continue where CRS left them: a key's counters,
//! with its imported spend added, are written in the transaction of its
//! usage, so they hold that spend exactly when the usage is in (also after
//! an interruption and a rerun).
//!
//! Memory: one SCAN collects only compact references (interned model and
//! label ids) grouped by key; values are read key batch by key batch.
//!
//! Writes: each batch of keys (and of accounts) is one
//! [`Store::apply_usage_bulk`]: its usage merged, together with the batch's
//! checkpoints, which name the cutoff they were taken at. Batches run in the
//! order of our key ids, so consecutive batches write neighbouring buckets.
//!
//! Never twice: usage and the checkpoint that records it commit atomically,
//! so after an interruption at any point, each key's (and account's) usage
//! is in exactly when its checkpoint is; a rerun places a series after its
//! own checkpoint's cutoff, or from the start when it has none. The run-wide
//! cutoff blob is still written last: checkpoints of stores written before
//! checkpoints carried their cutoff are read against it.

use super::merge::{KIND_ACCOUNT, KIND_KEY};
use super::series::{Checkpoint, Counters, Cutoff, Level, Placement, Series};
use super::source::Fields;
use super::{Background, Ctx, Error};
use crate::domain::{AccountId, KeyId, NanoUsd, UsageSubject, UsageTotals};
use crate::limits::{
    is_claude_family, Calendar, FamilyCounter, KeySnapshot, LimitsSnapshot, ModelScope,
    PeriodCounter,
};
use crate::store::SealedBlob;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

const SECTION: &str = "usage";
const CUTOFF_BLOB: &str = "usage/cutoff";
/// Spend older than this cannot fall in a current day or week in any zone.
const SEED_RECENT_DAYS: i64 = 8;
/// CRS keys whose buckets are read per pipeline round and written per
/// transaction (about 25 hourly deltas each). Larger transactions are not
/// cheaper per bucket (sled's inserts dominate) but hold more memory: sled
/// frees the node copies a transaction makes only after it.
const KEYS_PER_BATCH: usize = 50;
/// CRS accounts per transaction (their series are read one by one).
const ACCOUNTS_PER_BATCH: usize = 100;

/// A series owner's checkpoint as stored: with the cutoff it was taken at,
/// or (written before checkpoints carried it) without, read against the
/// run-wide cutoff.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum Saved<T> {
    Cut { cutoff: Cutoff, seen: T },
    Legacy(T),
}

/// The previous run's cutoff and checkpoint for one owner; None when it has
/// none (its usage was never imported: place it all).
fn previous<T>(saved: Option<Saved<T>>, run_cutoff: Option<&Cutoff>) -> Option<(Cutoff, T)> {
    match saved? {
        Saved::Cut { cutoff, seen } => Some((cutoff, seen)),
        Saved::Legacy(seen) => run_cutoff.map(|c| (c.clone(), seen)),
    }
}

/// Deltas and checkpoints of the current batch, committed together.
#[derive(Default)]
struct Pending {
    deltas: Vec<(UsageSubject, DateTime<Utc>, UsageTotals)>,
    checkpoints: Vec<SealedBlob>,
    /// Keys' limit counters with this batch's spend added.
    counters: Vec<(KeyId, KeySnapshot)>,
}

/// A bucket reference: level (None = lifetime), interned model and label.
#[derive(Clone, Copy)]
struct BucketRef {
    level: Option<Level>,
    model: u32,
    label: u32,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

/// `usage:{K}:model:{level}:{M}[:{label}]`, parsed from the right because
/// model names may contain `:`.
fn parse_key_model(key: &str, interner: &mut Interner) -> Option<(String, BucketRef)> {
    let rest = key.strip_prefix("usage:")?;
    let (k, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("model:")?;
    let (level, rest) = rest.split_once(':')?;
    let (level, model, label) = match level {
        "alltime" => (None, rest, ""),
        "monthly" => {
            let (m, l) = rest.rsplit_once(':')?;
            (Some(Level::Month), m, l)
        }
        "daily" => {
            let (m, l) = rest.rsplit_once(':')?;
            (Some(Level::Day), m, l)
        }
        "hourly" => {
            // The label `YYYY-MM-DD:HH` itself holds a colon.
            let split = rest.len().checked_sub(14)?;
            let (m, l) = (rest.get(..split)?, rest.get(split + 1..)?);
            (rest.as_bytes().get(split) == Some(&b':')).then_some(())?;
            (Some(Level::Hour), m, l)
        }
        _ => return None,
    };
    if model.is_empty() {
        return None;
    }
    Some((
        k.to_string(),
        BucketRef {
            level,
            model: interner.id(model),
            label: interner.id(label),
        },
    ))
}

/// `account_usage:{A}` and `account_usage:{monthly|daily|hourly}:{A}:{label}`.
fn parse_account(key: &str, interner: &mut Interner) -> Option<(String, BucketRef)> {
    let rest = key.strip_prefix("account_usage:")?;
    let (level, rest) = match rest.split_once(':') {
        None => {
            return Some((
                rest.to_string(),
                BucketRef {
                    level: None,
                    model: 0,
                    label: 0,
                },
            ))
        }
        Some(("monthly", r)) => (Level::Month, r),
        Some(("daily", r)) => (Level::Day, r),
        Some(("hourly", r)) => (Level::Hour, r),
        Some(_) => return None,
    };
    let (a, label) = rest.split_once(':')?;
    if a == "index" {
        return None;
    }
    Some((
        a.to_string(),
        BucketRef {
            level: Some(level),
            model: 0,
            label: interner.id(label),
        },
    ))
}

fn num(f: &Fields, name: &str) -> u64 {
    super::fields::parse_int(super::fields::text(f, name))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// Counters of a key × model bucket (or, with `total` names, an account total).
fn counters(f: &Fields, total: bool) -> Counters {
    let n = |plain: &str, tot: &str| num(f, if total { tot } else { plain });
    Counters {
        requests: n("requests", "totalRequests"),
        input: n("inputTokens", "totalInputTokens"),
        output: n("outputTokens", "totalOutputTokens"),
        cache_create: n("cacheCreateTokens", "totalCacheCreateTokens"),
        cache_read: n("cacheReadTokens", "totalCacheReadTokens"),
        ephemeral_1h: n("ephemeral1hTokens", "totalEphemeral1hTokens"),
        real_micro: num(f, "realCostMicro"),
        rated_micro: num(f, "ratedCostMicro"),
    }
}

fn totals(c: &Counters, priced: bool) -> UsageTotals {
    let one_hour = c.ephemeral_1h.min(c.cache_create);
    let list = NanoUsd(c.real_micro.saturating_mul(1000));
    UsageTotals {
        requests: c.requests,
        input_tokens: c.input,
        output_tokens: c.output,
        cache_creation_5m_tokens: c.cache_create - one_hour,
        cache_creation_1h_tokens: one_hour,
        cache_read_tokens: c.cache_read,
        list_cost: list,
        billed_cost: NanoUsd(c.rated_micro.saturating_mul(1000)),
        unpriced_requests: if priced { 0 } else { c.requests },
        ..UsageTotals::default()
    }
}

fn into_series(
    refs: &[BucketRef],
    maps: Vec<Fields>,
    interner: &Interner,
    total_names: bool,
) -> BTreeMap<u32, Series> {
    let mut out: BTreeMap<u32, Series> = BTreeMap::new();
    for (r, f) in refs.iter().zip(maps) {
        let s = out.entry(r.model).or_default();
        let label = interner.name(r.label).to_string();
        match r.level {
            None => s.all = counters(&f, total_names),
            Some(Level::Month) => {
                s.months.insert(label, counters(&f, false));
            }
            Some(Level::Day) => {
                s.days.insert(label, counters(&f, false));
            }
            Some(Level::Hour) => {
                s.hours.insert(label, counters(&f, false));
            }
        }
    }
    out
}

fn bucket_key(prefix: &str, id: &str, r: &BucketRef, interner: &Interner) -> String {
    let label = interner.name(r.label);
    match (prefix, r.level) {
        ("usage", None) => format!("usage:{id}:model:alltime:{}", interner.name(r.model)),
        ("usage", Some(l)) => format!(
            "usage:{id}:model:{}:{}:{label}",
            level_name(l),
            interner.name(r.model)
        ),
        (_, None) => format!("account_usage:{id}"),
        (_, Some(l)) => format!("account_usage:{}:{id}:{label}", level_name(l)),
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Month => "monthly",
        Level::Day => "daily",
        Level::Hour => "hourly",
    }
}

/// A key's spend placed in this run, for its budget counters.
#[derive(Default)]
struct Seed {
    /// Billed nanos.
    total: u64,
    /// (hour, billed nanos, Claude-family model) of the last
    /// [`SEED_RECENT_DAYS`] days, the only ones a day or week budget counts.
    recent: Vec<(DateTime<Utc>, u64, bool)>,
}

pub(super) async fn import_usage(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let prev_cutoff: Option<Cutoff> = match ctx.store {
        Some(store) => store.import_blob(&ctx.links.source, CUTOFF_BLOB)?,
        None => None,
    };
    let cutoff = Cutoff::at(ctx.now, ctx.offset);
    let recent_from = ctx.now - chrono::Duration::days(SEED_RECENT_DAYS);
    let mut interner = Interner::default();
    interner.id(""); // id 0: no model / no label
    let mut by_key: BTreeMap<String, Vec<BucketRef>> = BTreeMap::new();
    ctx.src
        .scan_each("usage:*:model:*", |k| {
            if let Some((key, r)) = parse_key_model(k, &mut interner) {
                by_key.entry(key).or_default().push(r);
            }
        })
        .await?;
    let mut by_account: BTreeMap<String, Vec<BucketRef>> = BTreeMap::new();
    ctx.src
        .scan_each("account_usage:*", |k| {
            if let Some((a, r)) = parse_account(k, &mut interner) {
                by_account.entry(a).or_default().push(r);
            }
        })
        .await?;
    ctx.progress
        .phase("usage", (by_key.len() + by_account.len()) as u64);
    let mut pending = Pending::default();
    let mut keys: Vec<(String, Vec<BucketRef>)> = by_key.into_iter().collect();
    // In our id order, so each batch's key buckets are neighbours in the store.
    keys.sort_by_key(|(k, _)| ctx.links.local_id(KIND_KEY, k));
    let mut bg = Background::default();
    let chunks: Vec<&[(String, Vec<BucketRef>)]> = keys.chunks(KEYS_PER_BATCH).collect();
    let result: Result<(), Error> = async {
        let mut known_next = match chunks.first() {
            Some(first) => known_keys(ctx, first)?,
            None => HashMap::new(),
        };
        for (at, batch) in chunks.iter().copied().enumerate() {
            let mut known = std::mem::take(&mut known_next);
            let mut names = Vec::new();
            for (k, refs) in batch {
                names.extend(refs.iter().map(|r| bucket_key("usage", k, r, &interner)));
            }
            let mut maps = ctx.src.hgetall_many(&names).await?.into_iter();
            for (crs_key, refs) in batch {
                ctx.progress.advance(1);
                let fields: Vec<Fields> = maps.by_ref().take(refs.len()).collect();
                ctx.report.section(SECTION).read += 1;
                let Some(key_id) = ctx.links.local_id(KIND_KEY, crs_key).map(KeyId) else {
                    ctx.report.skip(
                        SECTION,
                        format!("usage:{crs_key}"),
                        "usage of a key that is not imported (import keys first)",
                    );
                    continue;
                };
                let KnownKey {
                    created_at,
                    saved,
                    counters,
                } = known.remove(crs_key).unwrap_or_default();
                let start = created_at.unwrap_or(ctx.now);
                let series = into_series(refs, fields, &interner, false);
                let blob = key_blob(crs_key);
                let had_cutoff = matches!(saved, Some(Saved::Cut { .. }));
                let prev: Option<(Cutoff, BTreeMap<String, Checkpoint>)> =
                    previous(saved, prev_cutoff.as_ref());
                let mut next_cp = BTreeMap::new();
                let mut placed_any = false;
                let mut seed = Seed::default();
                for (model_id, s) in &series {
                    let model = interner.name(*model_id).to_string();
                    let empty = Checkpoint::default();
                    let prev = prev
                        .as_ref()
                        .map(|(c, cps)| (c, cps.get(&model).unwrap_or(&empty)));
                    let placement = Placement {
                        offset: ctx.offset,
                        prev,
                        start,
                        now: ctx.now,
                    };
                    for (hour, c) in placement.place(s) {
                        let t = totals(&c, true);
                        placed_any = true;
                        add_summary(ctx, &t);
                        for subject in [
                            UsageSubject::KeyModel(key_id, model.clone()),
                            UsageSubject::Key(key_id),
                            UsageSubject::Model(model.clone()),
                            UsageSubject::Global,
                        ] {
                            pending.deltas.push((subject, hour, t));
                        }
                        seed.total += t.billed_cost.0;
                        if hour >= recent_from && t.billed_cost.0 > 0 {
                            seed.recent
                                .push((hour, t.billed_cost.0, is_claude_family(&model)));
                        }
                    }
                    next_cp.insert(model, s.checkpoint(&cutoff));
                }
                note_outcome(ctx, placed_any, prev.is_some());
                // Nothing new: the stored checkpoint still says exactly what
                // is in, so a no-op rerun rewrites nothing.
                let keep = had_cutoff && !placed_any;
                if let (Some(store), false) = (ctx.writer(), keep) {
                    let saved = Saved::Cut {
                        cutoff: cutoff.clone(),
                        seen: next_cp,
                    };
                    let sealed = store.seal_import_blob(&ctx.links.source, &blob, &saved)?;
                    pending.checkpoints.push(sealed);
                }
                if let (Some((mut ks, budgets)), true) = (counters, seed.total > 0) {
                    add_seed(&mut ks, &budgets, &seed, ctx.now);
                    pending.counters.push((key_id, ks));
                }
            }
            // The next chunk's store state is read between two writes:
            // sled's reads wait for a transaction in flight, so reading it
            // here lets the placing above overlap the previous write.
            bg.wait().await?;
            if let Some(next) = chunks.get(at + 1) {
                known_next = known_keys(ctx, next)?;
            }
            commit(ctx, &mut bg, &mut pending).await?;
        }
        import_account_usage(
            ctx,
            &mut bg,
            by_account,
            &interner,
            prev_cutoff.as_ref(),
            &cutoff,
        )
        .await
    }
    .await;
    // Also after an error: what was started commits before the import returns.
    bg.wait().await?;
    result?;
    if let Some(store) = ctx.writer() {
        store.put_import_blob(&ctx.links.source, CUTOFF_BLOB, &cutoff)?;
    }
    if prev_cutoff.is_none() {
        ctx.report.notes.push(format!(
            "usage: hours CRS still keeps (7 days) are placed exactly; older days at their local noon and older months at their first day's noon (CRS buckets are in UTC{:+}), so per-hour views of older usage are approximate while totals match CRS",
            ctx.opts.tz_offset_hours
        ));
    }
    Ok(())
}

fn note_outcome(ctx: &mut Ctx<'_>, placed: bool, rerun: bool) {
    let s = ctx.report.section(SECTION);
    match (placed, rerun) {
        (true, false) => s.created += 1,
        (true, true) => s.updated += 1,
        (false, _) => s.unchanged += 1,
    }
}

fn add_summary(ctx: &mut Ctx<'_>, t: &UsageTotals) {
    let u = &mut ctx.report.usage;
    u.requests += t.requests;
    u.input_tokens += t.input_tokens;
    u.output_tokens += t.output_tokens;
    u.cache_creation_tokens += t.cache_creation_tokens();
    u.cache_read_tokens += t.cache_read_tokens;
    u.billed_cost_nanos += t.billed_cost.0;
    u.buckets += 1;
}

/// What the store holds about a key whose usage is imported.
#[derive(Default)]
struct KnownKey {
    /// Our key's creation time (where a lifetime remainder is placed).
    created_at: Option<DateTime<Utc>>,
    /// The previous run's checkpoint.
    saved: Option<Saved<BTreeMap<String, Checkpoint>>>,
    /// The key's limit counters (a running relay's, else the stored ones)
    /// and its budgets, when the store is written.
    counters: Option<(KeySnapshot, crate::limits::Budgets)>,
}

fn key_blob(crs_key: &str) -> String {
    format!("usage/key/{crs_key}")
}

/// Reads what the store holds about a chunk's keys, by CRS key id.
fn known_keys(
    ctx: &Ctx<'_>,
    batch: &[(String, Vec<BucketRef>)],
) -> Result<HashMap<String, KnownKey>, Error> {
    let Some(store) = ctx.store else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::with_capacity(batch.len());
    for (crs_key, _) in batch {
        let Some(id) = ctx.links.local_id(KIND_KEY, crs_key) else {
            continue;
        };
        let key_id = KeyId(id);
        let key = store.get_key(key_id)?;
        let saved = store.import_blob(&ctx.links.source, &key_blob(crs_key))?;
        let counters = match (&key, ctx.writer()) {
            (Some(key), Some(_)) => {
                let current = match ctx.live_limits {
                    Some(live) => live.key_snapshot(key_id),
                    None => store.limit_counter(key_id)?,
                };
                Some((
                    current.unwrap_or_else(|| empty_counters(key_id)),
                    key.policy.budgets.clone(),
                ))
            }
            _ => None,
        };
        out.insert(
            crs_key.clone(),
            KnownKey {
                created_at: key.map(|k| k.created_at),
                saved,
                counters,
            },
        );
    }
    Ok(out)
}

/// Commits a batch's usage with its checkpoints (see the module doc), in
/// the background while the next batch is read.
async fn commit(
    ctx: &mut Ctx<'_>,
    bg: &mut Background,
    pending: &mut Pending,
) -> Result<(), Error> {
    let Pending {
        deltas,
        checkpoints,
        counters,
    } = std::mem::take(pending);
    let Some(store) = ctx.writer().cloned() else {
        return Ok(());
    };
    if deltas.is_empty() && checkpoints.is_empty() {
        return Ok(());
    }
    // Merged and planned here, so the writer thread only writes.
    let bulk = store
        .prepare_usage_bulk(&deltas, checkpoints)
        .with_limit_counters(&counters)?;
    drop(deltas);
    let live = ctx.live_limits.cloned();
    bg.run(move || {
        store.write_usage_bulk(bulk)?;
        if let Some(live) = live {
            // A running relay counts on from the seeded counters; marked
            // changed so its next checkpoint also writes whatever its
            // requests added meanwhile.
            let ids: Vec<KeyId> = counters.iter().map(|(k, _)| *k).collect();
            live.restore(LimitsSnapshot {
                keys: counters.into_iter().map(|(_, ks)| ks).collect(),
            });
            live.mark_changed(ids);
        }
        Ok(())
    })
    .await
}

async fn import_account_usage(
    ctx: &mut Ctx<'_>,
    bg: &mut Background,
    by_account: BTreeMap<String, Vec<BucketRef>>,
    interner: &Interner,
    prev_cutoff: Option<&Cutoff>,
    cutoff: &Cutoff,
) -> Result<(), Error> {
    let mut unpriced = false;
    let mut pending = Pending::default();
    let mut in_batch = 0usize;
    for (crs_account, refs) in by_account {
        ctx.progress.advance(1);
        if in_batch == ACCOUNTS_PER_BATCH {
            commit(ctx, bg, &mut pending).await?;
            in_batch = 0;
        }
        let Some(account_id) = ctx
            .links
            .local_id(KIND_ACCOUNT, &crs_account)
            .map(AccountId)
        else {
            // Usage of accounts not imported (other platforms) stays in CRS.
            continue;
        };
        let names: Vec<String> = refs
            .iter()
            .map(|r| bucket_key("account", &crs_account, r, interner))
            .collect();
        let maps = ctx.src.hgetall_many(&names).await?;
        let Some(series) = into_series(&refs, maps, interner, true).remove(&0) else {
            continue;
        };
        in_batch += 1;
        let blob = format!("usage/account/{crs_account}");
        let saved = match ctx.store {
            Some(store) => store.import_blob(&ctx.links.source, &blob)?,
            None => None,
        };
        let had_cutoff = matches!(saved, Some(Saved::Cut { .. }));
        let prev: Option<(Cutoff, Checkpoint)> = previous(saved, prev_cutoff);
        let start = ctx
            .store
            .and_then(|s| s.get_account(account_id).ok().flatten())
            .map_or(ctx.now, |a| a.created_at);
        let placement = Placement {
            offset: ctx.offset,
            prev: prev.as_ref().map(|(c, cp)| (c, cp)),
            start,
            now: ctx.now,
        };
        let placed = placement.place(&series);
        let keep = had_cutoff && placed.is_empty();
        for (hour, c) in placed {
            // CRS stores no account cost: the requests are flagged unpriced.
            unpriced |= c.requests > 0;
            pending
                .deltas
                .push((UsageSubject::Account(account_id), hour, totals(&c, false)));
        }
        if let (Some(store), false) = (ctx.writer(), keep) {
            let saved = Saved::Cut {
                cutoff: cutoff.clone(),
                seen: series.checkpoint(cutoff),
            };
            let sealed = store.seal_import_blob(&ctx.links.source, &blob, &saved)?;
            pending.checkpoints.push(sealed);
        }
    }
    commit(ctx, bg, &mut pending).await?;
    if unpriced {
        ctx.report.warn(
            "account usage is imported without cost: CRS does not store per-account cost (requests are flagged unpriced)",
        );
    }
    Ok(())
}

/// A key without counters yet.
fn empty_counters(key_id: KeyId) -> KeySnapshot {
    KeySnapshot {
        key_id,
        activated_at: None,
        windows: Vec::new(),
        daily: PeriodCounter::default(),
        weekly: PeriodCounter::default(),
        monthly: PeriodCounter::default(),
        total: NanoUsd::ZERO,
        family: None,
    }
}

/// Adds a key's imported spend to its budget counters: the lifetime total
/// always; the current day and week for keys whose budgets name a zone
/// (those with CRS daily or weekly Claude limits).
fn add_seed(
    ks: &mut KeySnapshot,
    budgets: &crate::limits::Budgets,
    seed: &Seed,
    now: DateTime<Utc>,
) {
    ks.total = ks.total.saturating_add(NanoUsd(seed.total));
    let Some(tz) = budgets.time_zone else {
        return;
    };
    let cal = Calendar {
        tz,
        week: budgets.weekly_reset,
    };
    let (day, week) = (cal.day(now), cal.week(now));
    let within = |family_only: bool, start: DateTime<Utc>, end: DateTime<Utc>| {
        seed.recent
            .iter()
            .filter(|(t, _, fam)| *t >= start && *t < end && (!family_only || *fam))
            .map(|(_, n, _)| *n)
            .sum::<u64>()
    };
    let day_spend = within(false, day.start, day.end);
    if budgets.daily.is_some() && day_spend > 0 {
        add_period(&mut ks.daily, day.start, day.end, day_spend);
    }
    let family_spend = within(true, week.start, week.end);
    if budgets.family_weekly.is_some() && family_spend > 0 {
        let fam = ks.family.get_or_insert_with(|| FamilyCounter {
            scope: ModelScope::AllClaude,
            week: PeriodCounter::default(),
        });
        add_period(&mut fam.week, week.start, week.end, family_spend);
    }
}

fn add_period(p: &mut PeriodCounter, start: DateTime<Utc>, end: DateTime<Utc>, nanos: u64) {
    if p.start == Some(start) && p.end == Some(end) {
        p.used = p.used.saturating_add(NanoUsd(nanos));
    } else {
        *p = PeriodCounter {
            start: Some(start),
            end: Some(end),
            used: NanoUsd(nanos),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_keys_parse_from_the_right() {
        let mut i = Interner::default();
        i.id("");
        let (k, r) = parse_key_model(
            "usage:abc:model:hourly:us.anthropic:claude/x:2026-11-26:23",
            &mut i,
        )
        .unwrap();
        assert_eq!(k, "abc");
        assert_eq!(r.level, Some(Level::Hour));
        assert_eq!(i.name(r.model), "us.anthropic:claude/x");
        assert_eq!(i.name(r.label), "2026-11-26:23");
        let (_, r) = parse_key_model("usage:abc:model:daily:m:1:2026-11-26", &mut i).unwrap();
        assert_eq!((i.name(r.model), i.name(r.label)), ("m:1", "2026-11-26"));
        let (_, r) = parse_key_model("usage:abc:model:alltime:m:1", &mut i).unwrap();
        assert_eq!((r.level, i.name(r.model)), (None, "m:1"));
        assert!(parse_key_model("usage:model:daily:m:2026-11-26", &mut i).is_none());
        assert!(parse_key_model("usage:abc:model:hourly:x", &mut i).is_none());
        let (a, r) = parse_account("account_usage:hourly:acc:2026-11-26:23", &mut i).unwrap();
        assert_eq!((a.as_str(), i.name(r.label)), ("acc", "2026-11-26:23"));
        assert!(parse_account("account_usage:daily:index:2026-11-26", &mut i).is_none());
        assert!(parse_account("account_usage:model:daily:acc:m:2026-11-26", &mut i).is_none());
        assert_eq!(parse_account("account_usage:acc", &mut i).unwrap().0, "acc");
    }
}
