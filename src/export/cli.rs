//! The `claude-relay export keys` and `claude-relay import keys` commands:
//! their arguments, the offline path (opening a stopped data dir's store
//! directly, refusing clearly when a running server holds it) and the
//! online path (a running server's API: `startExport`, following its
//! progress, a one-time download). A CLI edge, so errors are `anyhow`.
//!
//! Files are written to `<out>.partial` and renamed when complete, so an
//! interrupted command never leaves a file that looks finished.

use super::format::Format;
use super::import;
use super::jobs::{self, ExportSpec, Masking, PeriodPreset, Progress, Variant};
use crate::config::Config;
use crate::domain::{AccountId, GroupId, KeyStatus, NanoUsd};
use crate::store::{KeyFilter, Store, StoreOptions};
use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// `claude-relay export keys`.
#[derive(clap::Args, Clone, Debug)]
pub struct ExportKeysArgs {
    /// json, ndjson or csv.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Comma-separated criteria: status=active|disabled|deleted, tag=T (repeatable),
    /// search=S, created_from=RFC3339, created_before=RFC3339, expires_before=RFC3339,
    /// bound_account=ID, bound_group=ID, min_cost=USD, max_cost=USD,
    /// min_requests=N, max_requests=N.
    #[arg(long)]
    pub filter: Option<String>,
    /// Columns or column groups to keep, comma-separated (e.g. name,usage.period).
    #[arg(long)]
    pub fields: Option<String>,
    /// lifetime, today, this_month, last_month, last_7_days, last_30_days.
    #[arg(long, default_value = "lifetime")]
    pub usage_period: String,
    /// Add the per-model breakdown.
    #[arg(long)]
    pub by_model: bool,
    /// none, full, partial or pseudonym.
    #[arg(long, default_value = "partial")]
    pub masking: String,
    /// Start CSV with a UTF-8 byte order mark (for Excel).
    #[arg(long)]
    pub csv_bom: bool,
    /// A migration export (key hashes, unmasked; JSON or NDJSON).
    #[arg(long)]
    pub migration: bool,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Export through a running server's API (e.g. http://127.0.0.1:3000)
    /// instead of opening the data dir.
    #[arg(long, requires = "token")]
    pub server: Option<String>,
    /// Admin session token for --server (also RELAY_ADMIN_TOKEN).
    #[arg(long, env = "RELAY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `claude-relay import keys`.
#[derive(clap::Args, Clone, Debug)]
pub struct ImportKeysArgs {
    /// A MIGRATION export (JSON or NDJSON).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Report what would happen without writing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_format(s: &str) -> anyhow::Result<Format> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "json" => Format::Json,
        "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        other => bail!("unknown format {other:?} (json, ndjson or csv)"),
    })
}

fn parse_masking(s: &str) -> anyhow::Result<Masking> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" => Masking::None,
        "full" => Masking::Full,
        "partial" => Masking::Partial,
        "pseudonym" => Masking::Pseudonym,
        other => bail!("unknown masking {other:?} (none, full, partial or pseudonym)"),
    })
}

fn parse_time(name: &str, v: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| anyhow!("{name}: expected an RFC 3339 time, got {v:?}"))
}

fn parse_status(v: &str) -> anyhow::Result<KeyStatus> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "active" => KeyStatus::Active,
        "disabled" => KeyStatus::Disabled,
        "deleted" => KeyStatus::Deleted,
        other => bail!("unknown status {other:?}"),
    })
}

/// Parses `--filter` (see [`ExportKeysArgs::filter`]).
pub fn parse_filter(text: &str) -> anyhow::Result<KeyFilter> {
    let mut f = KeyFilter::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("filter {part:?}: expected name=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let uuid =
            |v: &str| uuid::Uuid::parse_str(v).map_err(|_| anyhow!("{k}: {v:?} is not an id"));
        let usd = |v: &str| {
            NanoUsd::parse_decimal(v)
                .map(|n| n.0)
                .ok_or_else(|| anyhow!("{k}: {v:?} is not a USD amount"))
        };
        let count = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| anyhow!("{k}: {v:?} is not a count"))
        };
        match k {
            "status" => {
                let list = v
                    .split('|')
                    .map(parse_status)
                    .collect::<Result<Vec<_>, _>>()?;
                f.statuses.get_or_insert_with(Vec::new).extend(list);
            }
            "tag" => f.tags.push(v.to_string()),
            "search" => f.search = Some(v.to_string()),
            "created_from" => f.created_from = Some(parse_time(k, v)?),
            "created_before" => f.created_before = Some(parse_time(k, v)?),
            "expires_before" => f.expires_before = Some(parse_time(k, v)?),
            "bound_account" => f.bound_account = Some(AccountId(uuid(v)?)),
            "bound_group" => f.bound_group = Some(GroupId(uuid(v)?)),
            "min_cost" => f.min_billed_cost_nano = Some(usd(v)?),
            "max_cost" => f.max_billed_cost_nano = Some(usd(v)?),
            "min_requests" => f.min_requests = Some(count(v)?),
            "max_requests" => f.max_requests = Some(count(v)?),
            other => bail!("unknown filter {other:?}"),
        }
    }
    Ok(f)
}

/// The spec the arguments describe (periods resolved in `tz`).
pub fn spec_of(args: &ExportKeysArgs, tz: chrono_tz::Tz) -> anyhow::Result<ExportSpec> {
    let mut spec = ExportSpec::new(parse_format(&args.format)?);
    spec.variant = if args.migration {
        Variant::Migration
    } else {
        Variant::Standard
    };
    if let Some(f) = &args.filter {
        spec.filter = parse_filter(f)?;
    }
    spec.fields = args
        .fields
        .as_ref()
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
    spec.period = PeriodPreset::parse(&args.usage_period)
        .map_err(|e| anyhow!(e))?
        .and_then(|p| p.range(tz, chrono::Utc::now()));
    if spec.filter.needs_usage() {
        spec.filter.usage_since = spec.period.map(|(from, _)| from);
    }
    spec.by_model = args.by_model;
    spec.masking = if args.migration {
        Masking::None
    } else {
        parse_masking(&args.masking)?
    };
    spec.csv_bom = args.csv_bom;
    spec.validate().map_err(|e| anyhow!(e))?;
    Ok(spec)
}

/// Opens the store of a stopped relay; a running one holds sled's lock.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let opts = StoreOptions {
        data_dir: config.data_dir.clone(),
        master_key: config.master_key.clone(),
        master_key_file: config.master_key_path(),
        cache_capacity_bytes: config.sled_cache_bytes,
    };
    match Store::open(&opts) {
        Ok(s) => Ok(s),
        Err(e) if e.to_string().contains("lock") => bail!(
            "the data dir {} is in use by a running claude-relay; stop it, or export through \
             its API with --server URL --token TOKEN",
            config.data_dir.display()
        ),
        Err(e) => Err(e)
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display())),
    }
}

fn partial_of(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} keys {msg} ({per_sec}, ETA {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Runs an export offline into `args.out`; returns the final progress.
pub fn export_offline(config: &Config, args: &ExportKeysArgs) -> anyhow::Result<Progress> {
    let tz = crate::limits::parse_time_zone(&config.time_zone).map_err(|e| anyhow!(e))?;
    let spec = spec_of(args, tz)?;
    let store = open_store(config)?;
    let env = jobs::RunEnv {
        relay_key_prefixes: vec![config.key_prefix.clone()],
        pseudonym_key: super::service::pseudonym_key(&store)?,
    };
    let partial = partial_of(&args.out);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let bar = bar(args.quiet);
    let cancel = AtomicBool::new(false);
    let mut on_progress = |p: Progress| {
        bar.set_length(p.total);
        bar.set_position(p.processed);
        bar.set_message(format!("{} KiB", p.bytes / 1024));
    };
    let result = jobs::run(&store, &spec, &env, file, &cancel, &mut on_progress);
    let (file, progress) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bar.abandon();
            return Err(anyhow!("export failed: {e}"));
        }
    };
    file.sync_all().context("cannot sync the export file")?;
    drop(file);
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("cannot move the export to {}", args.out.display()))?;
    bar.finish();
    Ok(progress)
}

/// Imports a migration file offline; returns the report.
pub fn import_offline(
    config: &Config,
    args: &ImportKeysArgs,
) -> anyhow::Result<import::ImportReport> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let records = import::parse(&text)?;
    let store = open_store(config)?;
    let report = import::import(&store, &records, args.dry_run)?;
    Ok(report)
}

/// Exports through a running server: starts the job, follows it, downloads
/// the file. Only the filters the API's key filter has are allowed.
pub async fn export_online(
    args: &ExportKeysArgs,
    server: &str,
    token: &str,
) -> anyhow::Result<Progress> {
    let base = server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let gql = |query: &'static str, variables: serde_json::Value| {
        let client = client.clone();
        let url = format!("{base}/graphql");
        let token = token.to_string();
        async move {
            let resp: serde_json::Value = client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"query": query, "variables": variables}))
                .send()
                .await
                .context("cannot reach the server")?
                .json()
                .await
                .context("the server's answer is not JSON")?;
            if let Some(errors) = resp.get("errors") {
                bail!(
                    "the server refused: {}",
                    errors[0]["message"].as_str().unwrap_or("unknown error")
                );
            }
            Ok(resp["data"].clone())
        }
    };
    let mut filter = serde_json::Map::new();
    if let Some(text) = &args.filter {
        let f = parse_filter(text)?;
        let unsupported = f.created_from.is_some()
            || f.created_before.is_some()
            || f.expires_before.is_some()
            || f.bound_account.is_some()
            || f.bound_group.is_some()
            || f.needs_usage()
            || f.tags.len() > 1;
        if unsupported {
            bail!("through --server only status, one tag and search filter; export offline for the others");
        }
        if let Some(s) = f.statuses {
            let names: Vec<String> = s
                .iter()
                .map(|s| format!("{s:?}").to_ascii_uppercase())
                .collect();
            filter.insert("status".into(), serde_json::json!(names));
        }
        if let Some(t) = f.tags.first() {
            filter.insert("tag".into(), serde_json::json!(t));
        }
        if let Some(s) = f.search {
            filter.insert("search".into(), serde_json::json!(s));
        }
    }
    let mut input = serde_json::json!({
        "format": parse_format(&args.format)?.extension().to_ascii_uppercase(),
        "variant": if args.migration { "MIGRATION" } else { "STANDARD" },
        "filter": filter,
        "usagePeriod": args.usage_period.to_ascii_uppercase().replace('-', "_"),
        "byModel": args.by_model,
        "masking": if args.migration { "NONE".to_string() } else { args.masking.to_ascii_uppercase() },
        "csvBom": args.csv_bom,
    });
    if let Some(fields) = &args.fields {
        input["fields"] = serde_json::json!(fields.split(',').map(str::trim).collect::<Vec<_>>());
    }
    let data = gql(
        "mutation($i: StartExportInput!) { startExport(input: $i) { id } }",
        serde_json::json!({"i": input}),
    )
    .await?;
    let id = data["startExport"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server did not return an export id"))?
        .to_string();
    let bar = bar(args.quiet);
    let progress = loop {
        let data = gql(
            "query($id: ID!) { export(id: $id) { state processed total bytes errors } }",
            serde_json::json!({"id": id}),
        )
        .await?;
        let e = &data["export"];
        let p = Progress {
            processed: e["processed"].as_u64().unwrap_or(0),
            total: e["total"].as_u64().unwrap_or(0),
            bytes: e["bytes"].as_u64().unwrap_or(0),
        };
        bar.set_length(p.total);
        bar.set_position(p.processed);
        match e["state"].as_str() {
            Some("COMPLETED") => break p,
            Some("FAILED") => bail!("the export failed: {}", e["errors"]),
            Some("CANCELLED") => bail!("the export was cancelled"),
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
            None => bail!("the export disappeared"),
        }
    };
    let data = gql(
        "mutation($id: ID!) { createExportDownload(input: {id: $id}) { url } }",
        serde_json::json!({"id": id}),
    )
    .await?;
    let url = data["createExportDownload"]["url"]
        .as_str()
        .ok_or_else(|| anyhow!("the server did not return a download link"))?;
    let mut resp = client
        .get(format!("{base}{url}"))
        .send()
        .await
        .context("download failed")?
        .error_for_status()
        .context("download refused")?;
    let partial = partial_of(&args.out);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    use tokio::io::AsyncWriteExt;
    let written: anyhow::Result<()> = async {
        while let Some(chunk) = resp.chunk().await.context("download interrupted")? {
            file.write_all(&chunk)
                .await
                .context("cannot write the export")?;
        }
        file.sync_all().await.context("cannot sync the export")?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &args.out)
        .await
        .with_context(|| format!("cannot move the export to {}", args.out.display()))?;
    bar.finish();
    Ok(progress)
}
