//! The select path's walk over a plan: whether each eligible account is
//! usable now (rests, breaker, cap, headroom, health), and which one the
//! strategy takes — by O(1) sampling for the random strategies on large
//! pools, by a class-ordered, bounded walk for the ranked ones.

use super::headroom;
use super::health::Availability;
use super::snapshot::Plan;
use super::strategy::{self, Candidate};
use super::RouteRequest;
use crate::domain::StrategyKind;

/// Pools at least this large use sampling for `balanced` and `latency`.
const SAMPLE_MIN: usize = 16;
/// Draws before sampling gives up and scans.
const SAMPLE_DRAWS: usize = 24;
/// Preferred accounts a ranked walk looks at inside one class.
const CLASS_SAMPLE: usize = 64;

/// One request's view over a plan while choosing.
pub(crate) struct Scan<'a> {
    pub plan: &'a Plan,
    pub req: &'a RouteRequest<'a>,
    pub now: u64,
    pub strategy: StrategyKind,
    pub cx: &'a strategy::Context<'a>,
}

impl<'a> Scan<'a> {
    /// The candidate at `pos` if it is usable now; `Err` carries a rest end.
    #[inline]
    fn candidate(&self, pos: usize) -> Result<Candidate<'a>, Option<u64>> {
        let plan: &'a Plan = self.plan;
        let e = &plan.eligible[pos];
        match e.live.availability(self.now, e.family, e.cap) {
            Availability::Resting(until) => Err(Some(until)),
            Availability::Full => Err(None),
            Availability::Ready { trial } => {
                let (headroom_ppm, low) = headroom::headroom(
                    &e.live,
                    self.now,
                    e.window_limit,
                    self.req.estimated_tokens,
                );
                Ok(Candidate {
                    e,
                    pos: pos as u32,
                    trial,
                    headroom_ppm,
                    low: low || e.live.is_degraded(self.now),
                })
            }
        }
    }

    /// O(1) choice for the random strategies on large pools: rejection
    /// sampling by weight (`balanced`, exact weighted choice among preferred
    /// accounts) or two preferred draws (`latency`). `None`: no luck within
    /// the draw budget, the caller scans.
    pub(crate) fn sample(&self, skip: &[u32]) -> Option<Candidate<'a>> {
        let n = self.plan.eligible.len();
        if n < SAMPLE_MIN {
            return None;
        }
        let rng = self.cx.rng;
        let mut first: Option<Candidate<'a>> = None;
        let bound = u64::from(self.plan.max_weight) * 1_000_000;
        for _ in 0..SAMPLE_DRAWS {
            let pos = rng.below(n);
            if skip.contains(&(pos as u32)) {
                continue;
            }
            let Ok(c) = self.candidate(pos) else {
                continue;
            };
            if c.low {
                continue;
            }
            match self.strategy {
                StrategyKind::Balanced => {
                    if rng.next_u64() % bound.max(1) < strategy::weight(&c, self.cx) {
                        return Some(c);
                    }
                }
                StrategyKind::Latency => match first {
                    None => first = Some(c),
                    Some(a) if a.pos != c.pos => {
                        return Some(if strategy::lighter(&a, &c, self.cx) {
                            a
                        } else {
                            c
                        });
                    }
                    Some(_) => {}
                },
                _ => return None,
            }
        }
        None
    }

    /// The choice among all eligible accounts. Ranked strategies walk their
    /// classes (accounts equal on the first key: one priority number, one
    /// price) best first and stop at the first class holding a preferred
    /// account; inside a class they look at up to `CLASS_SAMPLE` preferred
    /// accounts from a random starting point, so a class of a thousand costs
    /// what one of sixty-four does (exact for smaller classes). Random
    /// strategies collect the tier they draw from. `Err` carries the earliest
    /// rest end when nothing is usable.
    pub(crate) fn full(&self, skip: &[u32]) -> Result<Candidate<'a>, Option<u64>> {
        let mut earliest: Option<u64> = None;
        let mut visit = |pos: usize| -> Option<Candidate<'a>> {
            if !skip.is_empty() && skip.contains(&(pos as u32)) {
                return None;
            }
            match self.candidate(pos) {
                Ok(c) => Some(c),
                Err(Some(until)) => {
                    earliest = Some(earliest.map_or(until, |x| x.min(until)));
                    None
                }
                Err(None) => None,
            }
        };
        if !strategy::is_ranked(self.strategy) {
            let mut lists: [Vec<Candidate<'a>>; 2] = [Vec::new(), Vec::new()];
            for pos in 0..self.plan.eligible.len() {
                if let Some(c) = visit(pos) {
                    lists[usize::from(c.low)].push(c);
                }
            }
            for list in &lists {
                if let Some(i) = strategy::pick(self.strategy, list, self.cx) {
                    return Ok(list[i]);
                }
            }
            return Err(earliest);
        }
        let (order, classes) = self.plan.classes(self.strategy);
        let mut best: [Option<(strategy::Key, Candidate<'a>)>; 2] = [None, None];
        for &(start, end) in classes {
            let class = &order[start as usize..end as usize];
            let size = class.len();
            let offset = if size > CLASS_SAMPLE {
                self.cx.rng.below(size)
            } else {
                0
            };
            let mut preferred_seen = 0;
            for j in 0..size {
                let Some(c) = visit(class[(offset + j) % size] as usize) else {
                    continue;
                };
                let tier = usize::from(c.low);
                let k = strategy::key(self.strategy, &c, self.cx);
                if best[tier].as_ref().is_none_or(|(b, _)| k < *b) {
                    best[tier] = Some((k, c));
                }
                if tier == 0 {
                    preferred_seen += 1;
                    if preferred_seen >= CLASS_SAMPLE {
                        break;
                    }
                }
            }
            if best[0].is_some() {
                break;
            }
        }
        let [preferred, fallback] = best;
        preferred.or(fallback).map(|(_, c)| c).ok_or(earliest)
    }
}
