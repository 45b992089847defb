//! The immutable picture the select path reads: account slots, the pools
//! (shared, each group, each account for bound keys) and, per pool and
//! requested model, the precomputed list of eligible accounts with their
//! upstream model name. Built on `sync`, swapped in whole through `ArcSwap`;
//! live counters are carried over by account id.
//!
//! Eligibility per model is computed once per (pool, model name) and cached
//! in the pool, so `route` does no string matching per account per request.

use super::headroom::WindowLimit;
use super::health::LiveState;
use super::model::{ModelFamily, ModelRoute, ModelRules};
use crate::domain::{
    Account, AccountId, AccountKind, AccountMode, AccountRouting, AccountStatus, Group, GroupId,
    KeyBinding, StrategyKind,
};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Most model names cached per pool; beyond it, plans are computed per
/// request (correct, slower) so clients cannot grow memory with made-up names.
const MAX_PLANS_PER_POOL: usize = 256;

/// One account as the balancer sees it.
#[derive(Debug)]
pub struct AccountSlot {
    pub id: AccountId,
    pub name: String,
    pub kind: AccountKind,
    pub priority: u32,
    pub status: AccountStatus,
    pub routing: AccountRouting,
    pub(crate) rules: ModelRules,
    pub(crate) live: Arc<LiveState>,
}

impl AccountSlot {
    pub fn in_flight(&self) -> u32 {
        self.live.hot.in_flight.load(Ordering::Relaxed)
    }

    pub fn last_pick(&self) -> u64 {
        self.live.hot.last_pick.load(Ordering::Relaxed)
    }

    /// The account-wide rest end, if one was ever set (it may lie in the past).
    pub fn cooldown_until(&self) -> Option<SystemTime> {
        match self.live.cooldown_until.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(super::clock::from_unix_ms(ms)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.status == AccountStatus::Active
    }

    /// Pay-per-token unless it is a subscription (OAuth) account.
    pub fn is_subscription(&self) -> bool {
        self.kind == AccountKind::ClaudeOauth
    }
}

/// Which set of accounts a request may use; also the sticky map's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKey {
    Shared,
    Group(GroupId),
    Account(AccountId),
}

/// An account eligible for one (pool, model), with what the select path
/// reads copied in, so a scan touches only this entry and the account's hot
/// line. What only the chosen account needs lives in [`Plan::accounts`].
#[derive(Debug)]
pub(crate) struct Eligible {
    pub live: Arc<LiveState>,
    pub priority: u32,
    pub weight: u32,
    /// Concurrency cap (u32::MAX: none).
    pub cap: u32,
    /// Family of the model sent upstream (rate limits are per upstream family).
    pub family: ModelFamily,
    pub subscription: bool,
    pub cost_multiplier: f64,
    /// Own 5-hour token window (0 tokens: none configured).
    pub window_limit: WindowLimit,
}

/// Identity and upstream model name of an eligible account.
#[derive(Debug)]
pub(crate) struct Target {
    pub id: AccountId,
    pub upstream_model: Option<Arc<str>>,
}

/// Eligible accounts of one pool for one model.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub eligible: Vec<Eligible>,
    /// Parallel to `eligible`.
    pub accounts: Vec<Target>,
    pub position: HashMap<AccountId, u32>,
    /// Largest configured weight (the bound for weighted sampling).
    pub max_weight: u32,
    /// Positions by priority number, and by static price (subscriptions,
    /// then pay-per-token by multiplier): ranked scans in these orders can
    /// stop as soon as no later account can beat the best found.
    pub by_priority: Vec<u32>,
    pub by_price: Vec<u32>,
    /// Ranges of `by_priority` with one priority number, best first.
    pub priority_classes: Vec<(u32, u32)>,
    /// Ranges of `by_price` with one price (subscriptions first).
    pub price_classes: Vec<(u32, u32)>,
    /// The whole of `by_priority` as one class (least_used ranks everyone).
    pub one_class: Vec<(u32, u32)>,
}

impl Plan {
    /// Walk order and classes of a ranked strategy.
    pub(crate) fn classes(&self, kind: StrategyKind) -> (&[u32], &[(u32, u32)]) {
        match kind {
            StrategyKind::Priority => (&self.by_priority, &self.priority_classes),
            StrategyKind::CostFirst => (&self.by_price, &self.price_classes),
            _ => (&self.by_priority, &self.one_class),
        }
    }
}

/// Ranges of equal `class_of` values in an ordered list of positions.
fn ranges<K: PartialEq>(order: &[u32], class_of: impl Fn(u32) -> K) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (i, &pos) in order.iter().enumerate() {
        match out.last_mut() {
            Some((start, end)) if class_of(order[*start as usize]) == class_of(pos) => {
                *end = i as u32 + 1
            }
            _ => out.push((i as u32, i as u32 + 1)),
        }
    }
    out
}

pub(crate) struct Pool {
    pub key: PoolKey,
    /// Slot indexes of the members (enabled accounts only).
    members: Vec<u32>,
    /// The group's own strategy; `None`: the global one.
    pub strategy: Option<StrategyKind>,
    /// Every member, model rules ignored (the legacy `select`).
    any: Arc<Plan>,
    plans: ArcSwap<HashMap<Box<str>, Arc<Plan>>>,
}

impl Pool {
    fn new(
        key: PoolKey,
        members: Vec<u32>,
        strategy: Option<StrategyKind>,
        slots: &[Arc<AccountSlot>],
    ) -> Pool {
        let any = Arc::new(build_plan(&members, slots, None));
        Pool {
            key,
            members,
            strategy,
            any,
            plans: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Eligible accounts for `model`; the empty name means "any model".
    pub(crate) fn plan(&self, slots: &[Arc<AccountSlot>], model: &str) -> Arc<Plan> {
        if model.is_empty() {
            return self.any.clone();
        }
        if let Some(plan) = self.plans.load().get(model) {
            return plan.clone();
        }
        let plan = Arc::new(build_plan(&self.members, slots, Some(model)));
        if self.plans.load().len() < MAX_PLANS_PER_POOL {
            self.plans.rcu(|cur| {
                let mut next = HashMap::clone(cur);
                next.insert(Box::from(model), plan.clone());
                next
            });
        }
        plan
    }
}

fn build_plan(members: &[u32], slots: &[Arc<AccountSlot>], model: Option<&str>) -> Plan {
    let mut plan = Plan::default();
    for &index in members {
        let Some(slot) = slots.get(index as usize) else {
            continue;
        };
        let upstream_model = match model.map(|m| slot.rules.route(m)) {
            None | Some(ModelRoute::AsIs) => None,
            Some(ModelRoute::Mapped(to)) => Some(to),
            Some(ModelRoute::Refused) => continue,
        };
        let family = ModelFamily::of(upstream_model.as_deref().or(model).unwrap_or(""));
        let r = &slot.routing;
        plan.position.insert(slot.id, plan.eligible.len() as u32);
        let weight = r.weight.clamp(1, 1000);
        plan.max_weight = plan.max_weight.max(weight);
        plan.eligible.push(Eligible {
            live: slot.live.clone(),
            priority: slot.priority,
            weight,
            cap: r.max_concurrency.filter(|&c| c > 0).unwrap_or(u32::MAX),
            family,
            subscription: slot.is_subscription(),
            cost_multiplier: if r.cost_multiplier.is_finite() && r.cost_multiplier >= 0.0 {
                r.cost_multiplier
            } else {
                1.0
            },
            window_limit: WindowLimit::new(r.window_token_limit.unwrap_or(0)),
        });
        plan.accounts.push(Target {
            id: slot.id,
            upstream_model,
        });
    }
    let mut order: Vec<u32> = (0..plan.eligible.len() as u32).collect();
    order.sort_by_key(|&i| plan.eligible[i as usize].priority);
    plan.priority_classes = ranges(&order, |i| plan.eligible[i as usize].priority);
    plan.one_class = if order.is_empty() {
        Vec::new()
    } else {
        vec![(0, order.len() as u32)]
    };
    plan.by_priority = order.clone();
    let price = |i: u32| {
        let e = &plan.eligible[i as usize];
        if e.subscription {
            -1.0
        } else {
            e.cost_multiplier
        }
    };
    order.sort_by(|&a, &b| price(a).total_cmp(&price(b)));
    plan.price_classes = ranges(&order, |i| price(i).to_bits());
    plan.by_price = order;
    plan
}

pub(crate) struct Snapshot {
    pub slots: Arc<Vec<Arc<AccountSlot>>>,
    pub by_id: HashMap<AccountId, u32>,
    pub groups: Vec<Group>,
    shared: Pool,
    group_pools: HashMap<GroupId, Pool>,
    account_pools: HashMap<AccountId, Pool>,
}

impl Snapshot {
    pub(crate) fn empty() -> Snapshot {
        Snapshot::build(&[], &[], |_| None)
    }

    /// Builds a snapshot; `live_of` returns the live state an account had
    /// (so counters, cooldowns and leases survive a rebuild).
    pub(crate) fn build(
        accounts: &[Account],
        groups: &[Group],
        live_of: impl Fn(AccountId) -> Option<Arc<LiveState>>,
    ) -> Snapshot {
        let slots: Vec<Arc<AccountSlot>> = accounts
            .iter()
            .filter(|a| a.status != AccountStatus::Deleted)
            .map(|a| {
                Arc::new(AccountSlot {
                    id: a.id,
                    name: a.name.clone(),
                    kind: a.kind,
                    priority: a.priority,
                    status: a.status,
                    routing: a.routing.clone(),
                    rules: ModelRules::new(&a.routing.allowed_models, &a.routing.model_mapping),
                    live: live_of(a.id).unwrap_or_default(),
                })
            })
            .collect();
        let by_id: HashMap<AccountId, u32> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i as u32))
            .collect();
        let enabled = || {
            slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_enabled())
                .map(|(i, s)| (i as u32, s))
        };
        let shared_members = enabled()
            .filter(|(_, s)| s.routing.mode == AccountMode::Shared)
            .map(|(i, _)| i)
            .collect();
        let shared = Pool::new(PoolKey::Shared, shared_members, None, &slots);

        let mut group_members: HashMap<GroupId, Vec<u32>> =
            groups.iter().map(|g| (g.id, Vec::new())).collect();
        for (i, s) in enabled() {
            if s.routing.mode == AccountMode::Dedicated {
                continue;
            }
            for g in &s.routing.group_ids {
                let members = group_members.entry(*g).or_default();
                if !members.contains(&i) {
                    members.push(i);
                }
            }
        }
        let group_pools = group_members
            .into_iter()
            .map(|(g, members)| {
                let strategy = groups.iter().find(|x| x.id == g).and_then(|x| x.strategy);
                (g, Pool::new(PoolKey::Group(g), members, strategy, &slots))
            })
            .collect();
        let account_pools = enabled()
            .map(|(i, s)| {
                (
                    s.id,
                    Pool::new(PoolKey::Account(s.id), vec![i], None, &slots),
                )
            })
            .collect();
        Snapshot {
            slots: Arc::new(slots),
            by_id,
            groups: groups.to_vec(),
            shared,
            group_pools,
            account_pools,
        }
    }

    pub(crate) fn pool(&self, binding: KeyBinding) -> Option<&Pool> {
        match binding {
            KeyBinding::None => Some(&self.shared),
            KeyBinding::Group(g) => self.group_pools.get(&g),
            KeyBinding::Account(a) => self.account_pools.get(&a),
        }
    }

    pub(crate) fn live(&self, id: AccountId) -> Option<&Arc<LiveState>> {
        let index = *self.by_id.get(&id)?;
        self.slots.get(index as usize).map(|s| &s.live)
    }
}
