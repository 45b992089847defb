//! A simulated Anthropic upstream (wire-format faithful, with fault injection) for tests, benchmarks and `claude-relay demo`.
