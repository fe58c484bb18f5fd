//! The OpenAPI 3.1 document of the Bulk Web API, written by code: the record schemas come from
//! the field tables (`templates::schema`), the rest is this file.
//!
//! Owns: `document()`. Must not: describe a route `router` does not serve.

use serde_json::{json, Value};

/// The whole API as OpenAPI 3.1.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "bulkload Bulk Web API", "version": env!("CARGO_PKG_VERSION")},
        "paths": {}
    })
}
