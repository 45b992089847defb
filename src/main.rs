//! The `claude-relay` command: `serve` runs the relay, `demo` runs it in front
//! of the built-in simulated upstream, `export keys` / `import keys` move
//! keys in and out (offline or through a server). The only place for anyhow
//! and exit codes.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::dbg_macro)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use claude_relay::app::App;
use claude_relay::config::{Config, FlagOverrides};
use claude_relay::sim::SimUpstream;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "claude-relay",
    version,
    about = "Share a pool of Claude accounts behind relay-issued keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// TOML config file (also RELAY_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:3000 (also RELAY_LISTEN).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory for the sled store (also RELAY_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (the default).
    Serve(ServeArgs),
    /// Run the relay in front of a built-in simulated upstream with demo accounts and a demo key.
    Demo(ServeArgs),
    /// Import a claude-relay-service deployment (keys, accounts, groups, usage) from its
    /// Redis into the store. Run it with the relay stopped; rerunning brings new changes.
    ImportRedis {
        /// redis://[:password@]host:port/db of the CRS deployment (only read from).
        #[arg(long)]
        redis_url: String,
        /// The CRS ENCRYPTION_KEY (decrypts account credentials; keeps raw keys working).
        #[arg(long, env = "CRS_ENCRYPTION_KEY", hide_env_values = true)]
        crs_encryption_key: String,
        /// Report what would be imported without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Comma-separated subset of keys,accounts,groups,usage.
        #[arg(long, default_value = "keys,accounts,groups,usage")]
        only: String,
        /// CRS's TIMEZONE_OFFSET in hours (its date buckets use it).
        #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
        crs_timezone_offset: i32,
        #[command(flatten)]
        target: ServeArgs,
    },
    /// Export data (offline on a stopped data dir, or through --server).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Import data into a stopped data dir.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Export relay keys with their settings and usage.
    Keys {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        args: claude_relay::export::cli::ExportKeysArgs,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import the keys of a MIGRATION export (idempotent).
    Keys {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        args: claude_relay::export::cli::ImportKeysArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => demo(args).await,
            Command::ImportRedis {
                redis_url,
                crs_encryption_key,
                dry_run,
                only,
                crs_timezone_offset,
                target,
            } => {
                let opts = claude_relay::import::ImportOptions {
                    redis_url,
                    encryption_key: crs_encryption_key,
                    dry_run,
                    only: claude_relay::import::Sections::parse(&only)?,
                    tz_offset_hours: crs_timezone_offset,
                    key_prefix: String::new(),
                };
                import_redis(opts, target).await
            }
            Command::Export(ExportCommand::Keys { serve, args }) => export_keys(serve, args).await,
            Command::Import(ImportCommand::Keys { serve, args }) => import_keys(serve, args).await,
        }
    })
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let config = Config::load(&FlagOverrides {
        config_file: args.config.clone(),
        listen: args.listen,
        data_dir: args.data_dir.clone(),
    })?;
    init_logging(&config.log_filter);
    Ok(config)
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let listen = config.listen;
    let app = App::start(config).await.context("cannot start the relay")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listen, "claude-relay listening");
    app.serve(listener, shutdown_signal()).await?;
    tracing::info!("claude-relay stopped");
    Ok(())
}

async fn demo(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args)?;
    // A throwaway store unless the user named one, so the demo never touches ./data.
    let _temp_dir;
    if args.data_dir.is_none() && std::env::var_os("RELAY_DATA_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("claude-relay-demo-{}", std::process::id()));
        config.data_dir = dir.clone();
        _temp_dir = Some(dir);
    }
    let sim = SimUpstream::new()
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("cannot start the simulated upstream")?;
    let listen = config.listen;
    let key_prefix = config.key_prefix.clone();
    let app = App::start(config).await.context("cannot start the relay")?;
    let key = claude_relay::demo::seed(&app.store, &sim.base_url(), &key_prefix)
        .context("cannot seed demo data")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let base_url = format!(
        "http://{}",
        listener.local_addr().context("no local address")?
    );
    println!("{}", claude_relay::demo::instructions(&base_url, &key));
    app.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// sled's page cache for `import-redis` (the relay's default is 64 MB).
const IMPORT_SLED_CACHE_BYTES: u64 = 16 << 20;

/// `import-redis`: opens the store directly (the relay must be stopped: sled
/// locks its directory), runs the importer with a progress bar, prints the report.
async fn import_redis(
    mut opts: claude_relay::import::ImportOptions,
    target: ServeArgs,
) -> anyhow::Result<()> {
    let config = load_config(&target)?;
    opts.key_prefix = config.key_prefix.clone();
    // A dry run against a data dir without a store creates nothing.
    let has_store = config.data_dir.join(claude_relay::store::DB_DIR).exists();
    let store = if opts.dry_run && !has_store {
        None
    } else {
        let store = claude_relay::store::Store::open(&claude_relay::store::StoreOptions {
            data_dir: config.data_dir.clone(),
            master_key: config.master_key.clone(),
            master_key_file: config.master_key_path(),
            // A write-once load gains little from sled's cache, and sled
            // counts its cache by encoded size, well under what the nodes
            // take in memory: a smaller cache bounds the import's peak.
            cache_capacity_bytes: config.sled_cache_bytes.min(IMPORT_SLED_CACHE_BYTES),
        })
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
        Some(store)
    };
    let progress = claude_relay::import::BarProgress::default();
    let result = claude_relay::import::run(store.as_ref(), &opts, &progress).await;
    progress.finish();
    let report = result.context("import failed")?;
    println!("{report}");
    Ok(())
}

async fn export_keys(
    serve: ServeArgs,
    args: claude_relay::export::cli::ExportKeysArgs,
) -> anyhow::Result<()> {
    use claude_relay::export::cli;
    let progress = match (&args.server, &args.token) {
        (Some(server), Some(token)) => cli::export_online(&args, server, token).await?,
        _ => {
            let config = Config::load(&FlagOverrides {
                config_file: serve.config.clone(),
                listen: serve.listen,
                data_dir: serve.data_dir.clone(),
            })?;
            tokio::task::spawn_blocking(move || cli::export_offline(&config, &args))
                .await
                .context("export task failed")??
        }
    };
    eprintln!(
        "exported {} keys ({} bytes)",
        progress.processed, progress.bytes
    );
    Ok(())
}

async fn import_keys(
    serve: ServeArgs,
    args: claude_relay::export::cli::ImportKeysArgs,
) -> anyhow::Result<()> {
    let config = Config::load(&FlagOverrides {
        config_file: serve.config.clone(),
        listen: serve.listen,
        data_dir: serve.data_dir.clone(),
    })?;
    let report = tokio::task::spawn_blocking(move || {
        claude_relay::export::cli::import_offline(&config, &args)
    })
    .await
    .context("import task failed")??;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.conflicts > 0 {
        anyhow::bail!("{} keys were not imported (conflicts)", report.conflicts);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
