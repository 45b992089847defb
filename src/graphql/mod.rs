//! The admin GraphQL API (implemented by the store line of work).
use crate::config::Config;
use crate::store::{self, Store};
use std::sync::Arc;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub config: Arc<Config>,
}

pub fn router(state: AdminState) -> axum::Router {
    let _ = state;
    axum::Router::new()
}

pub fn schema_sdl() -> String {
    String::new()
}

pub async fn bootstrap_admin(store: &Store, config: &Config) -> Result<(), store::Error> {
    let _ = (store, config);
    Ok(())
}
