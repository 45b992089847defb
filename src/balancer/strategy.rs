//! The five strategies. Each only compares what the candidates report (the
//! live counters, headroom, configured weight and price); none measures or
//! mutates anything (tower's Load / p2c split). The select path has already
//! removed unavailable accounts, so every candidate here is usable.

use super::clock::Rng;
use super::snapshot::Eligible;
use crate::domain::StrategyKind;
use std::sync::atomic::Ordering;

const R: Ordering = Ordering::Relaxed;

/// One usable account for this request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate<'a> {
    pub e: &'a Eligible,
    /// Index in the plan.
    pub pos: u32,
    /// The pick must take the breaker's half-open trial slot.
    pub trial: bool,
    /// Share of the tightest window left, ppm.
    pub headroom_ppm: u32,
    /// Close to zero: only a last resort.
    pub low: bool,
}

impl Candidate<'_> {
    fn last_pick(&self) -> u64 {
        self.e.live.hot.last_pick.load(R)
    }

    fn in_flight(&self) -> u32 {
        self.e.live.hot.in_flight.load(R)
    }
}

/// What strategies may consult besides the candidates.
pub(crate) struct Context<'a> {
    pub now_ms: u64,
    pub rng: &'a Rng,
    /// List-price estimate of the request (cost_first).
    pub estimated_cost_nano: u64,
    /// cost_first: among free accounts, drain the window that resets soonest.
    pub drain_soonest_reset: bool,
    /// TTFB assumed for accounts without samples (latency).
    pub default_ttfb_ms: f64,
}

/// Ranked strategies choose the smallest [`key`], so the select path can
/// find their choice in one pass without collecting candidates.
pub(crate) fn is_ranked(kind: StrategyKind) -> bool {
    matches!(
        kind,
        StrategyKind::Priority | StrategyKind::LeastUsed | StrategyKind::CostFirst
    )
}

/// Lexicographic rank; smaller is better.
pub(crate) type Key = (u64, u64, u64, u64);

const PPM: u64 = 1_000_000;

/// - `priority`: lowest priority number; least recently used among equals (CRS order).
/// - `least_used`: most headroom left; then fewest in flight; then LRU.
/// - `cost_first`: marginal cost of this request in nano-USD — nothing on a
///   subscription with window headroom, price × multiplier on pay-per-token,
///   "never mind" on a subscription nearly out. Ties: most headroom, fewest
///   in flight, LRU; with draining on, the free account whose window resets
///   soonest goes first (its tokens expire unused).
#[inline]
pub(crate) fn key(kind: StrategyKind, x: &Candidate<'_>, cx: &Context<'_>) -> Key {
    let spent = PPM - u64::from(x.headroom_ppm).min(PPM);
    match kind {
        StrategyKind::Priority => (u64::from(x.e.priority), x.last_pick(), 0, 0),
        StrategyKind::LeastUsed => (spent, u64::from(x.in_flight()), x.last_pick(), 0),
        StrategyKind::CostFirst => {
            let cost = if x.e.subscription && x.low {
                u64::MAX
            } else {
                static_cost(x.e, cx)
            };
            let drain = if cx.drain_soonest_reset && cost == 0 {
                match x.e.live.window_reset.load(R) {
                    0 => u64::MAX,
                    t => t,
                }
            } else {
                0
            };
            (
                cost,
                drain,
                spent << 32 | u64::from(x.in_flight()),
                x.last_pick(),
            )
        }
        StrategyKind::Balanced | StrategyKind::Latency => (0, 0, 0, 0),
    }
}

/// `cost_first`'s cost before headroom is known: nothing on a subscription,
/// price × multiplier on pay-per-token. Without an estimate the multipliers
/// must still order the accounts, hence the floor.
#[inline]
pub(crate) fn static_cost(e: &Eligible, cx: &Context<'_>) -> u64 {
    if e.subscription {
        0
    } else {
        let base = cx.estimated_cost_nano.max(1_000_000) as f64;
        (base * e.cost_multiplier).min(u64::MAX as f64 / 2.0) as u64
    }
}

/// `balanced`: configured weight × health score (ppm).
#[inline]
pub(crate) fn weight(x: &Candidate<'_>, cx: &Context<'_>) -> u64 {
    u64::from(x.e.weight) * u64::from(x.e.live.health_ppm(cx.now_ms).max(1))
}

/// `latency`: peak-EWMA TTFB × (in flight + 1).
pub(crate) fn load(x: &Candidate<'_>, cx: &Context<'_>) -> f64 {
    let ttfb =
        x.e.live
            .ttfb_peak
            .decayed(cx.now_ms)
            .unwrap_or(cx.default_ttfb_ms);
    ttfb * f64::from(x.in_flight() + 1)
}

/// The better of two candidates by load (p2c's comparison).
pub(crate) fn lighter(a: &Candidate<'_>, b: &Candidate<'_>, cx: &Context<'_>) -> bool {
    let (la, lb) = (load(a, cx), load(b, cx));
    la < lb || (la == lb && a.last_pick() <= b.last_pick())
}

/// Index of the chosen candidate among collected ones; `None` only for an
/// empty list.
pub(crate) fn pick(kind: StrategyKind, c: &[Candidate<'_>], cx: &Context<'_>) -> Option<usize> {
    if c.len() <= 1 {
        return (!c.is_empty()).then_some(0);
    }
    match kind {
        StrategyKind::Balanced => balanced(c, cx),
        StrategyKind::Latency => latency(c, cx),
        _ => c
            .iter()
            .enumerate()
            .min_by_key(|(_, x)| key(kind, x, cx))
            .map(|(i, _)| i),
    }
}

/// Weighted random; effective weight = configured weight × health score.
fn balanced(c: &[Candidate<'_>], cx: &Context<'_>) -> Option<usize> {
    let total: u64 = c.iter().map(|x| weight(x, cx)).sum();
    if total == 0 {
        return Some(cx.rng.below(c.len()));
    }
    let mut target = cx.rng.next_u64() % total;
    for (i, x) in c.iter().enumerate() {
        let w = weight(x, cx);
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    Some(c.len() - 1)
}

/// Power of two choices over [`load`].
fn latency(c: &[Candidate<'_>], cx: &Context<'_>) -> Option<usize> {
    let a = cx.rng.below(c.len());
    let mut b = cx.rng.below(c.len() - 1);
    if b >= a {
        b += 1;
    }
    Some(if lighter(&c[a], &c[b], cx) { a } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::health::LiveState;
    use crate::balancer::model::ModelFamily;
    use std::sync::Arc;

    const NOW: u64 = 1_700_000_000_000;

    fn eligible(priority: u32) -> Eligible {
        Eligible {
            live: Arc::new(LiveState::default()),
            priority,
            weight: 100,
            cap: u32::MAX,
            family: ModelFamily::Sonnet,
            subscription: false,
            cost_multiplier: 1.0,
            window_limit: Default::default(),
        }
    }

    fn cands(es: &[Eligible]) -> Vec<Candidate<'_>> {
        es.iter()
            .enumerate()
            .map(|(pos, e)| Candidate {
                e,
                pos: pos as u32,
                trial: false,
                headroom_ppm: 1_000_000,
                low: false,
            })
            .collect()
    }

    fn cx(rng: &Rng) -> Context<'_> {
        Context {
            now_ms: NOW,
            rng,
            estimated_cost_nano: 50_000_000,
            drain_soonest_reset: false,
            default_ttfb_ms: 800.0,
        }
    }

    #[test]
    fn priority_lowest_number_then_lru() {
        let es = [eligible(5), eligible(1), eligible(1)];
        es[1].live.hot.last_pick.store(7, R);
        es[2].live.hot.last_pick.store(3, R);
        let rng = Rng::seeded(1);
        assert_eq!(
            pick(StrategyKind::Priority, &cands(&es), &cx(&rng)),
            Some(2)
        );
    }

    #[test]
    fn least_used_takes_most_headroom() {
        let es = [eligible(1), eligible(1), eligible(1)];
        let mut c = cands(&es);
        c[0].headroom_ppm = 300_000;
        c[1].headroom_ppm = 900_000;
        c[2].headroom_ppm = 900_000;
        es[1].live.hot.in_flight.store(2, R);
        let rng = Rng::seeded(1);
        assert_eq!(pick(StrategyKind::LeastUsed, &c, &cx(&rng)), Some(2));
    }

    #[test]
    fn cost_first_prefers_free_subscription_then_cheapest() {
        let mut es = [eligible(1), eligible(1), eligible(1), eligible(1)];
        es[0].cost_multiplier = 1.2;
        es[1].cost_multiplier = 1.0;
        es[2].subscription = true;
        es[3].subscription = true;
        let rng = Rng::seeded(1);
        let mut c = cands(&es);
        c[2].headroom_ppm = 200_000;
        c[3].headroom_ppm = 600_000;
        // Both subscriptions are free: the one with more headroom (least used).
        assert_eq!(pick(StrategyKind::CostFirst, &c, &cx(&rng)), Some(3));
        // Draining: the window that resets first, whatever its headroom.
        es[2].live.window_reset.store(NOW + 1_000, R);
        es[3].live.window_reset.store(NOW + 9_000, R);
        let drain = Context {
            drain_soonest_reset: true,
            ..cx(&rng)
        };
        assert_eq!(pick(StrategyKind::CostFirst, &c, &drain), Some(2));
        // Subscriptions nearly out: the cheaper pay-per-token account.
        c[2].low = true;
        c[3].low = true;
        assert_eq!(pick(StrategyKind::CostFirst, &c, &cx(&rng)), Some(1));
    }

    #[test]
    fn balanced_follows_weight_times_health() {
        let mut es = [eligible(1), eligible(1), eligible(1)];
        es[0].weight = 100;
        es[1].weight = 300;
        es[2].weight = 300;
        // Account 2 is failing: its health collapses.
        for i in 0..8 {
            es[2].live.record_failure(
                NOW + i,
                super::super::health::ErrorReason::ServerError,
                Some(500),
                false,
            );
        }
        es[2].live.refresh_health(NOW + 8, Some(800.0));
        let rng = Rng::seeded(7);
        let c = cands(&es);
        let mut seen = [0u32; 3];
        for _ in 0..10_000 {
            seen[pick(StrategyKind::Balanced, &c, &cx(&rng)).unwrap()] += 1;
        }
        assert!(seen[1] > 2 * seen[0], "{seen:?}");
        assert!(seen[2] < seen[0] / 10, "{seen:?}");
    }

    #[test]
    fn latency_p2c_prefers_fast_and_idle() {
        let es = [eligible(1), eligible(1)];
        es[0].live.ttfb_peak.observe(2_000.0, NOW, true, 0.25);
        es[1].live.ttfb_peak.observe(500.0, NOW, true, 0.25);
        let rng = Rng::seeded(3);
        let c = cands(&es);
        for _ in 0..20 {
            assert_eq!(pick(StrategyKind::Latency, &c, &cx(&rng)), Some(1));
        }
        // Five in flight on the fast one: 500 × 6 > 2000 × 1.
        es[1].live.hot.in_flight.store(5, R);
        assert_eq!(pick(StrategyKind::Latency, &c, &cx(&rng)), Some(0));
    }
}
