//! The admin API's one error type. Every resolver failure becomes a
//! [`GqlError`], rendered exactly once (in the conversion to
//! `async_graphql::Error`) with `extensions.code`. Internal causes are logged
//! there and never shown to the client.
//!
//! `GqlError` deliberately does not implement `Display`: async-graphql turns
//! any `Display` type into an error without a code, and this keeps that path
//! closed so every error carries one.

use crate::store;

/// The codes a client can see in `extensions.code`.
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const CONFLICT: &str = "CONFLICT";
pub const INTERNAL: &str = "INTERNAL";

#[derive(Debug)]
pub enum GqlError {
    Unauthenticated(String),
    Forbidden(String),
    BadUserInput(String),
    NotFound(String),
    Conflict(String),
    /// The cause is logged, never rendered.
    Internal(String),
}

impl GqlError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        GqlError::BadUserInput(message.into())
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        GqlError::Internal(cause.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            GqlError::Unauthenticated(_) => UNAUTHENTICATED,
            GqlError::Forbidden(_) => FORBIDDEN,
            GqlError::BadUserInput(_) => BAD_USER_INPUT,
            GqlError::NotFound(_) => NOT_FOUND,
            GqlError::Conflict(_) => CONFLICT,
            GqlError::Internal(_) => INTERNAL,
        }
    }

    /// The message a client may see (for errors reported inside a payload).
    pub(crate) fn public_text(&self) -> &str {
        self.public_message()
    }

    /// The message a client may see.
    fn public_message(&self) -> &str {
        match self {
            GqlError::Unauthenticated(m)
            | GqlError::Forbidden(m)
            | GqlError::BadUserInput(m)
            | GqlError::NotFound(m)
            | GqlError::Conflict(m) => m,
            GqlError::Internal(_) => "internal error",
        }
    }
}

impl From<GqlError> for async_graphql::Error {
    fn from(e: GqlError) -> Self {
        if let GqlError::Internal(cause) = &e {
            tracing::error!(error = %cause, "admin API internal error");
        }
        let mut err = async_graphql::Error::new(e.public_message());
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", e.code());
        err
    }
}

impl From<store::Error> for GqlError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Conflict(m) => GqlError::Conflict(m),
            store::Error::NotFound => GqlError::NotFound("not found".into()),
            other => GqlError::Internal(other.to_string()),
        }
    }
}

/// A GraphQL error response body with one coded error, for refusals made
/// before the executor runs (mutation over GET, timeout).
pub fn response_with(code: &str, message: &str) -> async_graphql::Response {
    let mut err = async_graphql::ServerError::new(message, None);
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    async_graphql::Response::from_errors(vec![err])
}

/// Errors from parsing and validation carry no code; they are the client's.
pub fn ensure_codes(response: &mut async_graphql::Response) {
    for err in &mut response.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", BAD_USER_INPUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e: async_graphql::Error = GqlError::internal("sled exploded at /secret/path").into();
        assert_eq!(e.message, "internal error");
        let code = e.extensions.as_ref().and_then(|x| x.get("code")).cloned();
        assert_eq!(code, Some(async_graphql::Value::from(INTERNAL)));
    }

    #[test]
    fn store_conflicts_map_to_conflict() {
        let e: GqlError = store::Error::Conflict("taken".into()).into();
        assert_eq!(e.code(), CONFLICT);
        let e: GqlError = store::Error::Sled("io".into()).into();
        assert_eq!(e.code(), INTERNAL);
    }
}
