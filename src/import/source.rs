//! Reading a claude-relay-service Redis: SCAN (never KEYS) unioned with the
//! index SETs CRS treats as authoritative, TYPE filtering where patterns
//! overlap (`claude:account:index` matches `claude:account:*`), and pipelined
//! batches. Only read commands are ever sent: the importer must not change
//! the deployment it migrates from.

use redis::aio::MultiplexedConnection;
use std::collections::{BTreeSet, HashMap};

/// Commands per pipelined round trip.
const BATCH: usize = 500;
/// SCAN's COUNT hint: keys examined per call.
const SCAN_COUNT: usize = 2000;

pub type Fields = HashMap<String, String>;

pub struct Source {
    con: MultiplexedConnection,
    census: Option<Census>,
}

/// The key names under some prefixes, from one walk of the keyspace.
struct Census {
    prefixes: Vec<String>,
    keys: BTreeSet<String>,
}

impl Census {
    /// The census's answer to `pattern` when it is `<literal>*` under one of
    /// its prefixes.
    fn answer<'a>(&'a self, pattern: &'a str) -> Option<impl Iterator<Item = &'a String>> {
        let literal = pattern.strip_suffix('*')?;
        if literal.contains(['*', '?', '[', '\\'])
            || !self
                .prefixes
                .iter()
                .any(|p| literal.starts_with(p.as_str()))
        {
            return None;
        }
        Some(
            self.keys
                .range(literal.to_string()..)
                .take_while(move |k| k.starts_with(literal)),
        )
    }
}

impl Source {
    pub async fn connect(url: &str) -> redis::RedisResult<Source> {
        let client = redis::Client::open(url)?;
        let con = client.get_multiplexed_async_connection().await?;
        Ok(Source { con, census: None })
    }

    /// Walks the keyspace once, keeping the names under `prefixes`; later
    /// scans of `<prefix>...*` patterns are answered from that. Every SCAN
    /// walks the whole keyspace whatever its pattern, and CRS keeps about 14
    /// keys per API key (mostly usage), so one walk for all record kinds
    /// instead of one per kind: at 100,000 keys each walk costs Redis about
    /// two seconds.
    pub async fn census(&mut self, prefixes: &[&str]) -> redis::RedisResult<()> {
        let mut keys = BTreeSet::new();
        self.census = None;
        self.scan_each("*", |k| {
            if prefixes.iter().any(|p| k.starts_with(p)) {
                keys.insert(k.to_string());
            }
        })
        .await?;
        self.census = Some(Census {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            keys,
        });
        Ok(())
    }

    /// Every key matching `pattern`, each once, sorted.
    pub async fn scan(&mut self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        if let Some(keys) = self.census.as_ref().and_then(|c| c.answer(pattern)) {
            return Ok(keys.cloned().collect());
        }
        let mut cursor = 0u64;
        let mut out = BTreeSet::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.con)
                .await?;
            out.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out.into_iter().collect())
    }

    /// Scans `pattern` and calls `each` with every key, without collecting
    /// them (for the usage keys, which can be millions).
    pub async fn scan_each(
        &mut self,
        pattern: &str,
        mut each: impl FnMut(&str),
    ) -> redis::RedisResult<()> {
        if let Some(keys) = self.census.as_ref().and_then(|c| c.answer(pattern)) {
            keys.for_each(|k| each(k));
            return Ok(());
        }
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.con)
                .await?;
            for k in &keys {
                each(k);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    pub async fn types(&mut self, keys: &[String]) -> redis::RedisResult<Vec<String>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("TYPE").arg(k);
            }
            let types: Vec<String> = pipe.query_async(&mut self.con).await?;
            out.extend(types);
        }
        Ok(out)
    }

    pub async fn hgetall_many(&mut self, keys: &[String]) -> redis::RedisResult<Vec<Fields>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("HGETALL").arg(k);
            }
            let maps: Vec<Fields> = pipe.query_async(&mut self.con).await?;
            out.extend(maps);
        }
        Ok(out)
    }

    pub async fn get_many(&mut self, keys: &[String]) -> redis::RedisResult<Vec<Option<String>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("GET").arg(k);
            }
            let values: Vec<Option<String>> = pipe.query_async(&mut self.con).await?;
            out.extend(values);
        }
        Ok(out)
    }

    pub async fn get(&mut self, key: &str) -> redis::RedisResult<Option<String>> {
        redis::cmd("GET").arg(key).query_async(&mut self.con).await
    }

    pub async fn smembers(&mut self, key: &str) -> redis::RedisResult<Vec<String>> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut self.con)
            .await?;
        members.sort();
        Ok(members)
    }

    /// Records stored as `<prefix><id>` of `want_type` (`hash` or `string`):
    /// ids from SCAN (only names with no further `:` after the prefix, so
    /// index keys sharing the prefix are left out) unioned with `index` (a
    /// SET), then filtered by TYPE. Returns the ids, sorted.
    pub async fn record_ids(
        &mut self,
        prefix: &str,
        index: Option<&str>,
        want_type: &str,
        exclude: &[&str],
    ) -> redis::RedisResult<Vec<String>> {
        let mut ids = BTreeSet::new();
        for key in self.scan(&format!("{prefix}*")).await? {
            if let Some(id) = key.strip_prefix(prefix) {
                if !id.is_empty() && !id.contains(':') && !exclude.contains(&id) {
                    ids.insert(id.to_string());
                }
            }
        }
        if let Some(index) = index {
            // An index of another type (e.g. a stray marker string) is ignored.
            let index_type: String = redis::cmd("TYPE")
                .arg(index)
                .query_async(&mut self.con)
                .await?;
            if index_type == "set" {
                ids.extend(self.smembers(index).await?);
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}{id}")).collect();
        let types = self.types(&keys).await?;
        Ok(ids
            .into_iter()
            .zip(types)
            .filter(|(_, t)| t == want_type)
            .map(|(id, _)| id)
            .collect())
    }

    /// `record_ids` of HASH records, with their fields.
    pub async fn hash_records(
        &mut self,
        prefix: &str,
        index: Option<&str>,
        exclude: &[&str],
    ) -> redis::RedisResult<Vec<(String, Fields)>> {
        let ids = self.record_ids(prefix, index, "hash", exclude).await?;
        let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}{id}")).collect();
        let maps = self.hgetall_many(&keys).await?;
        Ok(ids.into_iter().zip(maps).collect())
    }
}

/// A Redis URL with its password (if any) masked, for reports and labels.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://****@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redacted_url("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://****@10.0.0.1:6379/2"
        );
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
