//! The ScyllaDB driver's errors, classified as the runtime needs them: worth retrying
//! (timeouts, unavailable replicas, a cluster still starting) or not.

use std::fmt::Display;

use scylla::errors::{
    DbError, ExecutionError, IntoRowsResultError, MaybeFirstRowError, NewSessionError,
    NextPageError, NextRowError, PagerExecutionError, PrepareError, RequestAttemptError,
    RequestError, SerializationError, TypeCheckError,
};

use crate::StoreError;

/// Whether a driver error is worth retrying.
pub(super) trait Transience {
    fn is_transient(&self) -> bool;
}

fn transient_db(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::RateLimitReached { .. }
            | DbError::ServerError
            | DbError::TruncateError
    )
}

impl Transience for RequestAttemptError {
    fn is_transient(&self) -> bool {
        match self {
            RequestAttemptError::DbError(db, _) => transient_db(db),
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            _ => false,
        }
    }
}

impl Transience for RequestError {
    fn is_transient(&self) -> bool {
        match self {
            RequestError::LastAttemptError(e) => e.is_transient(),
            RequestError::EmptyPlan
            | RequestError::ConnectionPoolError(_)
            | RequestError::RequestTimeout(_) => true,
            _ => false,
        }
    }
}

impl Transience for PrepareError {
    fn is_transient(&self) -> bool {
        match self {
            PrepareError::ConnectionPoolError(_) => true,
            PrepareError::AllAttemptsFailed { first_attempt } => first_attempt.is_transient(),
            _ => false,
        }
    }
}

impl Transience for ExecutionError {
    fn is_transient(&self) -> bool {
        match self {
            ExecutionError::LastAttemptError(e) => e.is_transient(),
            ExecutionError::PrepareError(e) => e.is_transient(),
            ExecutionError::EmptyPlan
            | ExecutionError::ConnectionPoolError(_)
            | ExecutionError::RequestTimeout(_)
            | ExecutionError::SchemaAgreementError(_)
            | ExecutionError::MetadataError(_) => true,
            _ => false,
        }
    }
}

impl Transience for NextPageError {
    fn is_transient(&self) -> bool {
        match self {
            NextPageError::RequestFailure(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl Transience for PagerExecutionError {
    fn is_transient(&self) -> bool {
        match self {
            PagerExecutionError::PrepareError(e) => e.is_transient(),
            PagerExecutionError::NextPageError(e) => e.is_transient(),
            PagerExecutionError::SchemaAgreementError(_)
            | PagerExecutionError::MetadataError(_) => true,
            _ => false,
        }
    }
}

impl Transience for NextRowError {
    fn is_transient(&self) -> bool {
        match self {
            NextRowError::NextPageError(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl Transience for NewSessionError {
    fn is_transient(&self) -> bool {
        // Nodes not up yet or not resolvable yet: typical while a cluster starts.
        matches!(
            self,
            NewSessionError::FailedToResolveAnyHostname(_) | NewSessionError::MetadataError(_)
        )
    }
}

/// Errors about the shape of results or values: the schema is not what the code expects.
macro_rules! never_transient {
    ($($t:ty),*) => {$(
        impl Transience for $t {
            fn is_transient(&self) -> bool {
                false
            }
        }
    )*};
}

never_transient!(
    IntoRowsResultError,
    MaybeFirstRowError,
    TypeCheckError,
    SerializationError
);

/// Maps a driver error to a [`StoreError`], with what was being done.
pub(super) fn db_err<E: Transience + Display>(context: &'static str) -> impl Fn(E) -> StoreError {
    move |e| {
        if e.is_transient() {
            StoreError::Transient(format!("scylla: {context}: {e}"))
        } else {
            StoreError::Fatal(format!("scylla: {context}: {e}"))
        }
    }
}

pub(super) fn corrupt(what: &str, detail: impl Display) -> StoreError {
    StoreError::Fatal(format!("scylla: unexpected {what} in the store: {detail}"))
}
