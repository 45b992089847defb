//! Criterion benchmarks of the relay's per-request work: SSE usage parsing,
//! body inspection of a real Claude Code request, and account selection over
//! 1,000 accounts. Figures go into issue notes, never into assertions.

use claude_relay::balancer::Balancer;
use claude_relay::domain::{Account, AccountId, AccountKind, AccountStatus, Credentials};
use claude_relay::relay::inspect::inspect_messages;
use claude_relay::relay::sse::SseUsageParser;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

fn sse_stream(deltas: usize) -> Vec<u8> {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":30000,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..deltas {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} and some more text \"}}}}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":500}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn bench_sse(c: &mut Criterion) {
    let stream = sse_stream(500);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("parse_500_deltas_in_1k_chunks", |b| {
        b.iter(|| {
            let mut parser = SseUsageParser::new();
            for chunk in stream.chunks(1024) {
                parser.feed(black_box(chunk));
            }
            black_box(parser.usage())
        })
    });
    group.finish();
}

fn claude_code_body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/captures/claude_code_tool_use.jsonl"
    );
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let line = text.lines().next().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            serde_json::to_vec(&v["body"]).unwrap_or_default()
        }
        // Outside the workspace: a synthetic body of similar size.
        Err(_) => serde_json::to_vec(&serde_json::json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64000, "stream": true,
            "system": [{"type": "text", "text": "x".repeat(20_000)}],
            "messages": [{"role": "user", "content": "y".repeat(56_000)}]
        }))
        .unwrap_or_default(),
    }
}

fn bench_inspect(c: &mut Criterion) {
    let body = claude_code_body();
    let mut group = c.benchmark_group("inspect");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("claude_code_request", |b| {
        b.iter(|| black_box(inspect_messages(black_box(&body))))
    });
    group.finish();
}

fn bench_select(c: &mut Criterion) {
    let now = chrono::Utc::now();
    let accounts: Vec<Account> = (0..1000)
        .map(|i| Account {
            id: AccountId::generate(),
            name: format!("acct-{i}"),
            kind: AccountKind::AnthropicApiKey,
            priority: 1 + (i % 5) as u32,
            status: AccountStatus::Active,
            base_url: None,
            credentials: Credentials::default(),
            proxy: None,
            routing: Default::default(),
            created_at: now,
            updated_at: now,
        })
        .collect();
    let balancer = Balancer::default();
    balancer.sync(&accounts);
    c.bench_function("balancer/select_1000_accounts", |b| {
        b.iter_batched(
            || (),
            |()| black_box(balancer.select(&[]).map(|l| l.account_id())),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_sse, bench_inspect, bench_select);
criterion_main!(benches);
