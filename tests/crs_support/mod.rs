//! Test support for the CRS import: the fixture (tests/fixtures/crs-redis,
//! a copy of ../shared/fixtures/crs-redis) and a real redis-server loaded
//! from it on a free loopback port.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ENCRYPTION_KEY: &str = "6260fb9ca27d74bfa13eb30b19b48ed9d846b4e8724c81b202861bfc846129d8";
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const FIXTURE_KEYS: usize = 1115;

/// The fixture travels with the repository (a copy of
/// ../shared/fixtures/crs-redis), so a clean clone on a fresh CI machine has it.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crs-redis")
}

pub fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A redis-server on a free loopback port, loaded from the fixture; killed on drop.
pub struct Redis {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_redis() -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.rdb");
    std::fs::copy(fixture_dir().join("dump-no-ttl.rdb"), &dump).unwrap();
    let mut perms = std::fs::metadata(&dump).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&dump, perms).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir.path())
        .args([
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not installed (apt-get install -y redis-server)");
    let url = format!("redis://127.0.0.1:{port}/0");
    let redis = Redis {
        child,
        url: url.clone(),
        _dir: dir,
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    for _ in 0..200 {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await {
            let size: redis::RedisResult<usize> = redis::cmd("DBSIZE").query_async(&mut con).await;
            if size.as_ref().ok() == Some(&FIXTURE_KEYS) {
                return redis;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not load the fixture");
}

/// The manifest entry of `list` (`keys`, `accounts`) with this label.
pub fn by_label<'a>(m: &'a Value, list: &str, label: &str) -> &'a Value {
    m[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == label)
        .unwrap()
}
