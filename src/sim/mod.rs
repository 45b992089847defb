//! A simulated Anthropic upstream (stub until the sim line of work lands).
use std::net::SocketAddr;

#[derive(Clone, Default)]
pub struct SimUpstream;

pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: SimUpstream,
}

impl SimHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl SimUpstream {
    pub fn new() -> SimUpstream {
        SimUpstream
    }
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        Ok(SimHandle { addr, sim: self })
    }
}
