//! The export row of one relay key: its columns (the [`Schema`]) and their
//! values from a `domain::ApiKey` and its usage totals. It owns which key
//! fields an export shows and how; free text (name, description, tags) goes
//! through the masker when one is given. It never reads the store and never
//! shows the key hash or secret: only `display_prefix` identifies the key.
//!
//! Enum values are written as the admin API spells them (`ACTIVE`,
//! `ACCOUNT`); times as RFC 3339 UTC; money as exact decimal USD strings
//! from integer nano-dollars.
//!
//! Columns, in order: `id`, `name`, `description`, `tags`, `status`,
//! `created_at`, `updated_at`, `last_used_at`, `expires_at`,
//! `display_prefix`, `cost_multiplier`, `binding.kind`, `binding.id`,
//! `binding.name`, the policy flattened into `limits.*` and `budgets.*`
//! (see [`POLICY_COLUMNS`]), then `usage.lifetime.*`, `usage.period.*` (with a period), and the per-model
//! breakdown `usage.<period|lifetime>.by_model.<model>.*` of the chosen
//! period (lifetime without one). Each usage block has the fields of
//! [`USAGE_FIELDS`].

use super::format::{Column, Error, ExportRow, Schema, Segment, Value};
use super::mask::Masker;
use crate::domain::{ApiKey, KeyBinding, KeyStatus, UsageTotals};
use std::borrow::Cow;

/// The fields of each usage block. `total_tokens` counts all four kinds
/// (conventions: "tokens" in limits); `cost_usd` is the billed cost (list
/// cost × the key's multiplier), `list_cost_usd` the upstream price.
pub const USAGE_FIELDS: [&str; 12] = [
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_creation_5m_tokens",
    "cache_creation_1h_tokens",
    "cache_read_tokens",
    "total_tokens",
    "list_cost_usd",
    "cost_usd",
    "error_requests",
    "unpriced_requests",
    "estimated_requests",
];

/// The policy columns, flattened so CSV has one cell each. Money is USD
/// decimal text, absent limits are empty (null in JSON). Structured rules
/// (expiry, model rule, rate windows, clients) are compact JSON text in
/// one cell: readable in a spreadsheet and exact. A migration export
/// carries the policy itself instead (`export::jobs`).
pub const POLICY_COLUMNS: [&str; 13] = [
    "limits.expiry",
    "limits.rate_windows",
    "limits.max_in_flight",
    "limits.max_queued",
    "limits.models",
    "limits.clients",
    "limits.permissions",
    "budgets.daily_usd",
    "budgets.weekly_usd",
    "budgets.monthly_usd",
    "budgets.total_usd",
    "budgets.family_weekly_usd",
    "budgets.time_zone",
];

/// Which usage columns an export has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRowOptions {
    /// Add a `usage.period` block (totals of the period the export chose).
    pub period: bool,
    /// Models of the per-model breakdown, as columns in this order; empty:
    /// no breakdown. The caller lists them up front (e.g. the models used
    /// in the period) so every row has the same columns, as CSV needs.
    pub models: Vec<String>,
}

/// The usage of one key that a row shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyUsage<'u> {
    pub lifetime: UsageTotals,
    /// Required when [`KeyRowOptions::period`] is set; zeros otherwise.
    pub period: Option<UsageTotals>,
    /// Totals per model of the chosen period, in any order; models not
    /// listed here are zero, models not in the options are left out.
    pub by_model: &'u [(String, UsageTotals)],
    /// Name of the account or group the key is bound to, when known.
    pub binding_name: Option<&'u str>,
}

/// Builds key rows of one export: the schema once, values per key.
#[derive(Clone, Debug)]
pub struct KeyRows {
    schema: Schema,
    options: KeyRowOptions,
    masker: Option<Masker>,
}

impl KeyRows {
    /// `masker`: `Some` to mask free text (exports with masking on, viewer
    /// role), `None` to write it as stored.
    pub fn new(options: KeyRowOptions, masker: Option<Masker>) -> Result<KeyRows, Error> {
        let schema = Schema::new(columns(&options))?;
        Ok(KeyRows {
            schema,
            options,
            masker,
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The row of `key`, to hand to `format::Writer::write`.
    pub fn row<'r>(&'r self, key: &'r ApiKey, usage: KeyUsage<'r>) -> KeyRow<'r> {
        KeyRow {
            rows: self,
            key,
            usage,
        }
    }

    /// Pushes the values of `key`'s row, one per schema column.
    pub fn values<'a>(&self, key: &'a ApiKey, usage: &KeyUsage<'_>, out: &mut Vec<Value<'a>>) {
        out.reserve(self.schema.len());
        out.push(Value::Text(Cow::Owned(key.id.to_string())));
        out.push(Value::Text(self.text(&key.name)));
        out.push(Value::Text(self.text(&key.description)));
        out.push(Value::List(
            key.tags.iter().map(|t| Value::Text(self.text(t))).collect(),
        ));
        out.push(Value::Text(Cow::Borrowed(status_name(key.status))));
        out.push(Value::Time(key.created_at));
        out.push(Value::Time(key.updated_at));
        out.push(key.last_used_at.map_or(Value::Null, Value::Time));
        out.push(key.expires_at.map_or(Value::Null, Value::Time));
        out.push(Value::Text(Cow::Borrowed(&key.display_prefix)));
        out.push(Value::Float(key.cost_multiplier));
        let (kind, id) = match key.binding {
            KeyBinding::None => ("NONE", None),
            KeyBinding::Account(a) => ("ACCOUNT", Some(a.to_string())),
            KeyBinding::Group(g) => ("GROUP", Some(g.to_string())),
        };
        out.push(Value::Text(Cow::Borrowed(kind)));
        out.push(id.map_or(Value::Null, |id| Value::Text(Cow::Owned(id))));
        out.push(usage.binding_name.map_or(Value::Null, |n| {
            Value::Text(self.text(n).into_owned().into())
        }));
        push_policy(&key.policy, out);
        push_usage(&usage.lifetime, out);
        if self.options.period {
            push_usage(&usage.period.unwrap_or_default(), out);
        }
        for model in &self.options.models {
            let totals = usage
                .by_model
                .iter()
                .find(|(m, _)| m == model)
                .map(|(_, t)| *t)
                .unwrap_or_default();
            push_usage(&totals, out);
        }
    }

    fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match &self.masker {
            Some(m) => m.mask(s),
            None => Cow::Borrowed(s),
        }
    }
}

/// One key's row, borrowing the key and its usage.
pub struct KeyRow<'r> {
    rows: &'r KeyRows,
    key: &'r ApiKey,
    usage: KeyUsage<'r>,
}

impl ExportRow for KeyRow<'_> {
    fn values<'a>(&'a self, out: &mut Vec<Value<'a>>) {
        self.rows.values(self.key, &self.usage, out);
    }
}

fn status_name(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "ACTIVE",
        KeyStatus::Disabled => "DISABLED",
        KeyStatus::Deleted => "DELETED",
    }
}

/// Compact JSON of a policy part; serialising plain data cannot fail, and
/// if it ever did an empty cell is better than a failed export.
fn json_text<T: serde::Serialize>(v: &T) -> Value<'static> {
    Value::Text(Cow::Owned(serde_json::to_string(v).unwrap_or_default()))
}

fn money(v: Option<crate::domain::NanoUsd>) -> Value<'static> {
    v.map_or(Value::Null, |m| {
        Value::Decimal(Cow::Owned(m.to_decimal_string()))
    })
}

fn push_policy(p: &crate::limits::KeyPolicy, out: &mut Vec<Value<'_>>) {
    use crate::limits::{Expiry, ModelRule};
    out.push(match p.expiry {
        Expiry::Never => Value::Null,
        e => json_text(&e),
    });
    out.push(if p.rate_windows.is_empty() {
        Value::Null
    } else {
        json_text(&p.rate_windows)
    });
    out.push(
        p.concurrency
            .as_ref()
            .map_or(Value::Null, |c| Value::UInt(u64::from(c.max_in_flight))),
    );
    out.push(
        p.concurrency
            .as_ref()
            .and_then(|c| c.queue.as_ref())
            .map_or(Value::Null, |q| Value::UInt(u64::from(q.max_queued))),
    );
    out.push(match &p.models {
        ModelRule::Any => Value::Null,
        rule => json_text(rule),
    });
    out.push(if p.clients.is_empty() {
        Value::Null
    } else {
        json_text(&p.clients)
    });
    out.push(Value::List(
        p.permissions
            .iter()
            .map(|f| Value::Text(Cow::Borrowed(f.as_str())))
            .collect(),
    ));
    let b = &p.budgets;
    out.push(money(b.daily));
    out.push(money(b.weekly));
    out.push(money(b.monthly));
    out.push(money(b.total));
    out.push(money(b.family_weekly.as_ref().map(|f| f.limit)));
    out.push(b.time_zone.map_or(Value::Null, |tz| {
        Value::Text(Cow::Owned(tz.name().to_string()))
    }));
}

fn push_usage(t: &UsageTotals, out: &mut Vec<Value<'_>>) {
    let total = t.input_tokens + t.output_tokens + t.cache_creation_tokens() + t.cache_read_tokens;
    out.extend([
        Value::UInt(t.requests),
        Value::UInt(t.input_tokens),
        Value::UInt(t.output_tokens),
        Value::UInt(t.cache_creation_5m_tokens),
        Value::UInt(t.cache_creation_1h_tokens),
        Value::UInt(t.cache_read_tokens),
        Value::UInt(total),
        Value::Decimal(Cow::Owned(t.list_cost.to_decimal_string())),
        Value::Decimal(Cow::Owned(t.billed_cost.to_decimal_string())),
        Value::UInt(t.error_requests),
        Value::UInt(t.unpriced_requests),
        Value::UInt(t.estimated_requests),
    ]);
}

fn key(s: &str) -> Segment {
    Segment::Key(s.to_string())
}

fn usage_columns(block: &[Segment], out: &mut Vec<Column>) {
    for f in USAGE_FIELDS {
        let mut path = block.to_vec();
        path.push(key(f));
        out.push(Column::from_segments(path));
    }
}

fn columns(options: &KeyRowOptions) -> Vec<Column> {
    let mut cols: Vec<Column> = [
        "id",
        "name",
        "description",
        "tags",
        "status",
        "created_at",
        "updated_at",
        "last_used_at",
        "expires_at",
        "display_prefix",
        "cost_multiplier",
        "binding.kind",
        "binding.id",
        "binding.name",
    ]
    .into_iter()
    .chain(POLICY_COLUMNS)
    .map(Column::parse)
    .collect();
    usage_columns(&[key("usage"), key("lifetime")], &mut cols);
    let chosen = if options.period { "period" } else { "lifetime" };
    if options.period {
        usage_columns(&[key("usage"), key("period")], &mut cols);
    }
    for model in &options.models {
        // Model names may contain dots: one segment each, whatever they hold.
        let block = [key("usage"), key(chosen), key("by_model"), key(model)];
        usage_columns(&block, &mut cols);
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, KeyId, NanoUsd};
    use crate::export::format::{Format, Writer, WriterOptions};
    use crate::export::mask::MaskConfig;
    use chrono::{TimeZone, Utc};

    fn api_key() -> ApiKey {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        ApiKey {
            id: KeyId::generate(),
            name: "=HYPERLINK(\"x\") for alice@example.com".into(),
            description: "token sk-ant-api03-abcDEF123456ghiJKL789012mnoPQR, \"ok\"\nline 2".into(),
            key_hash: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
            display_prefix: "cr_1a2b…9f0e".into(),
            status: KeyStatus::Active,
            tags: vec!["prod".into(), "owner:bob@example.com".into()],
            created_at: t,
            updated_at: t,
            last_used_at: None,
            expires_at: Some(t),
            cost_multiplier: 1.25,
            binding: KeyBinding::Account(AccountId::generate()),
            policy: crate::limits::KeyPolicy {
                budgets: crate::limits::Budgets {
                    monthly: Some(NanoUsd(12_500_000_000)),
                    ..Default::default()
                },
                concurrency: Some(crate::limits::ConcurrencyLimit {
                    max_in_flight: 3,
                    queue: None,
                }),
                ..Default::default()
            },
        }
    }

    fn totals(requests: u64, cost: u64) -> UsageTotals {
        UsageTotals {
            requests,
            input_tokens: 100,
            output_tokens: 20,
            cache_creation_5m_tokens: 3,
            cache_creation_1h_tokens: 4,
            cache_read_tokens: 5,
            list_cost: NanoUsd(cost),
            billed_cost: NanoUsd(cost * 5 / 4),
            ..UsageTotals::default()
        }
    }

    fn options() -> KeyRowOptions {
        KeyRowOptions {
            period: true,
            models: vec!["claude-sonnet-4".into(), "claude-3.5-haiku".into()],
        }
    }

    #[test]
    fn json_row_has_key_settings_and_usage_but_no_hash() {
        let rows = KeyRows::new(options(), None).unwrap();
        let k = api_key();
        let by_model = [("claude-sonnet-4".to_string(), totals(2, 1_500_000_000))];
        let usage = KeyUsage {
            lifetime: totals(10, 123_450_000),
            period: Some(totals(3, 2_000_000_000)),
            by_model: &by_model,
            binding_name: Some("primary"),
        };
        let mut w =
            Writer::new(Vec::new(), rows.schema(), &WriterOptions::new(Format::Json)).unwrap();
        w.write(&rows.row(&k, usage)).unwrap();
        let out = w.finish().unwrap();
        assert!(!String::from_utf8_lossy(&out).contains(&k.key_hash));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let r = &v[0];
        assert_eq!(r["id"], k.id.to_string());
        assert_eq!(r["name"], k.name);
        assert_eq!(
            r["tags"],
            serde_json::json!(["prod", "owner:bob@example.com"])
        );
        assert_eq!(r["status"], "ACTIVE");
        assert_eq!(r["created_at"], "2024-01-02T03:04:05Z");
        assert!(r["last_used_at"].is_null());
        assert_eq!(r["display_prefix"], "cr_1a2b…9f0e");
        assert_eq!(r["cost_multiplier"], 1.25);
        assert_eq!(r["binding"]["kind"], "ACCOUNT");
        assert_eq!(r["binding"]["name"], "primary");
        assert_eq!(r["budgets"]["monthly_usd"], "12.5");
        assert_eq!(r["limits"]["max_in_flight"], 3);
        assert!(r["budgets"]["daily_usd"].is_null());
        let life = &r["usage"]["lifetime"];
        assert_eq!(life["requests"], 10);
        assert_eq!(life["total_tokens"], 132);
        assert_eq!(life["list_cost_usd"], "0.12345");
        assert_eq!(life["cost_usd"], "0.1543125");
        assert_eq!(r["usage"]["period"]["cost_usd"], "2.5");
        let by = &r["usage"]["period"]["by_model"];
        assert_eq!(by["claude-sonnet-4"]["requests"], 2);
        assert_eq!(by["claude-3.5-haiku"]["requests"], 0);
        assert_eq!(by["claude-3.5-haiku"]["cost_usd"], "0");
    }

    #[test]
    fn masked_csv_row_is_masked_then_neutralised() {
        let masker = Masker::new(MaskConfig::default());
        let rows = KeyRows::new(KeyRowOptions::default(), Some(masker)).unwrap();
        let k = api_key();
        let mut w =
            Writer::new(Vec::new(), rows.schema(), &WriterOptions::new(Format::Csv)).unwrap();
        w.write(&rows.row(&k, KeyUsage::default())).unwrap();
        let out = w.finish().unwrap();
        let mut r = csv::Reader::from_reader(out.as_slice());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert!(header.contains(&"usage.lifetime.cost_usd".to_string()));
        assert!(!header.iter().any(|h| h.starts_with("usage.period")));
        let rec = r.records().next().unwrap().unwrap();
        let col = |name: &str| {
            rec.get(header.iter().position(|h| h == name).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(col("name"), "'=HYPERLINK(\"x\") for [REDACTED:email]");
        assert_eq!(
            col("description"),
            "token [REDACTED:anthropic_api_key], \"ok\"\nline 2"
        );
        assert_eq!(col("tags"), "[\"prod\",\"owner:[REDACTED:email]\"]");
        assert_eq!(col("usage.lifetime.cost_usd"), "0");
        assert_eq!(col("last_used_at"), "");
        assert_eq!(col("binding.kind"), "ACCOUNT");
    }

    #[test]
    fn schema_is_stable_and_selectable() {
        let rows = KeyRows::new(options(), None).unwrap();
        let names: Vec<&str> = rows.schema().columns().iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), 14 + POLICY_COLUMNS.len() + 12 * 4);
        assert_eq!(names[0], "id");
        assert!(names.contains(&"usage.period.by_model.claude-3.5-haiku.total_tokens"));
        let sel = rows
            .schema()
            .select(&["name", "usage.period.by_model"])
            .unwrap();
        assert_eq!(sel.len(), 1 + 12 * 2);
        let lifetime_breakdown = KeyRows::new(
            KeyRowOptions {
                period: false,
                models: vec!["m".into()],
            },
            None,
        )
        .unwrap();
        assert!(lifetime_breakdown
            .schema()
            .columns()
            .iter()
            .any(|c| c.name() == "usage.lifetime.by_model.m.requests"));
    }
}
