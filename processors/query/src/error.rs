//! The one error shape every 4xx and 5xx answer has:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! Codes are short, stable snake_case strings a client can branch on; messages are
//! for people and say what to change. Nothing here ever echoes a credential.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer: status, stable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }
}

/// Store failures are the server's problem, not the client's: a transient one is a
/// 503 the client may retry, anything else a 500. The store's message is kept (it
/// names no secret) because it is what an operator needs.
impl From<funnelfold_store::StoreError> for ApiError {
    fn from(e: funnelfold_store::StoreError) -> Self {
        match e {
            funnelfold_store::StoreError::Transient(m) => ApiError::unavailable(
                "store_unavailable",
                format!("the store is unavailable, retry later: {m}"),
            ),
            funnelfold_store::StoreError::Fatal(m) => {
                ApiError::internal(format!("store error: {m}"))
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// The JSON body, as bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        // A struct of two strings always serializes.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.to_json()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Serializes `value` as a JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => ApiError::internal(format!("cannot encode the response: {e}")).into_response(),
    }
}
