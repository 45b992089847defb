//! claude-relay: one binary that shares a pool of Claude accounts behind
//! relay-issued keys, streaming answers back untouched and accounting for
//! every token and cent.
//!
//! # Layout
//! - [`app`]: builds the router and state, runs the server with a passed-in shutdown.
//! - [`config`]: defaults < TOML < env < flags, parsed once; runtime settings.
//! - [`demo`]: `claude-relay demo` seeding and instructions.
//! - [`domain`]: shared plain types (ids, money, tokens, records).
//! - [`store`]: the only module that touches sled; secrets sealed by its vault.
//! - [`cache`]: moka tiers in front of the store (keys by hash, negative entries).
//! - [`relay`]: the client-facing hot path (auth, inspect, select, forward, tap); outbound image fetches.
//! - [`upstream`]: one adapter per account kind (API key, OAuth, Bedrock, Vertex) behind one interface, with declared capabilities; HTTP client pool.
//! - [`balancer`]: account selection, cooldowns and in-flight leases.
//! - [`usage`]: pricing, cost, and the batched usage writer.
//! - [`export`]: key exports: masking engine (31 detectors), CSV safety, streaming writers, key rows, export jobs, downloads, migration import, CLI.
//! - [`graphql`]: the admin API: roles, audit log, analytics, subscriptions, playground.
//! - [`import`]: `import-redis`, moving a claude-relay-service deployment in from its Redis.
//! - [`limits`]: key policy: rate windows, budgets, concurrency, restrictions, reservations.
//! - [`openai`]: OpenAI Chat Completions ⇄ Anthropic Messages translation (requests, replies, streams, errors).
//! - [`metrics`]: Prometheus metrics (names, recorder, `/metrics`).
//! - [`memory`]: the process allocator (jemalloc, two arenas) and why.
//! - [`sim`]: a simulated Anthropic upstream (plus Bedrock and Vertex AI) with fault injection (tests, benches, demo).

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::dbg_macro)]

pub mod app;
pub mod balancer;
pub mod cache;
pub mod config;
pub mod demo;
pub mod domain;
pub mod export;
pub mod graphql;
pub mod import;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod openai;
pub mod relay;
pub mod sim;
pub mod store;
pub mod upstream;
pub mod usage;
