//! Slow-operation detection: the [`SlowQueries`] schema extension times
//! every query and mutation, records the duration in a Prometheus histogram
//! and, over `graphql.slow_query_threshold_ms`, logs a warning with the
//! operation's name and type and counts it. Root fields over the threshold
//! are logged too (one timer per root field is cheap; nested fields are not
//! timed), so a slow operation names the field that made it slow. Never the query text: it may
//! hold literals such as passwords (conventions.md "Logs and audit").

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextResolve,
    ResolveInfo,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Value, Variables};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest operation name logged (names are client-chosen).
const MAX_NAME_CHARS: usize = 64;

pub(crate) struct SlowQueries {
    pub threshold: Duration,
}

impl ExtensionFactory for SlowQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(SlowQueryExtension {
            threshold: self.threshold,
            operations: Mutex::new(Vec::new()),
        })
    }
}

struct SlowQueryExtension {
    threshold: Duration,
    /// (name, type) of the document's operations, to label the one executed.
    operations: Mutex<Vec<(Option<String>, &'static str)>>,
}

fn kind(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for SlowQueryExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let ops = match &doc.operations {
            DocumentOperations::Single(op) => vec![(None, kind(op.node.ty))],
            DocumentOperations::Multiple(map) => map
                .iter()
                .map(|(name, op)| (Some(name.to_string()), kind(op.node.ty)))
                .collect(),
        };
        *self.operations.lock() = ops;
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let start = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let elapsed = start.elapsed();
        let ty = {
            let ops = self.operations.lock();
            ops.iter()
                .find(|(n, _)| n.is_none() || n.as_deref() == operation_name)
                .map_or("query", |(_, t)| *t)
        };
        let slow = elapsed >= self.threshold;
        crate::metrics::graphql_operation(ty, elapsed, slow);
        if slow {
            let name: String = operation_name
                .unwrap_or("-")
                .chars()
                .take(MAX_NAME_CHARS)
                .collect();
            tracing::warn!(
                graphql.operation = %name,
                graphql.operation_type = ty,
                duration_ms = elapsed.as_millis() as u64,
                threshold_ms = self.threshold.as_millis() as u64,
                "slow admin API operation"
            );
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let start = Instant::now();
        let field = info.name.to_string();
        let parent = info.parent_type.to_string();
        let result = next.run(ctx, info).await;
        let elapsed = start.elapsed();
        if elapsed >= self.threshold {
            tracing::warn!(
                graphql.field = %format!("{parent}.{field}"),
                duration_ms = elapsed.as_millis() as u64,
                "slow admin API field"
            );
        }
        result
    }
}
