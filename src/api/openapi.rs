//! The OpenAPI 3.1 document of the Bulk Web API, written by code from the config (its
//! environments) and the records' field tables (inquiry answers, filters), so it cannot drift
//! from what the router serves.
//!
//! Owns: `document(cfg)`. Must not: describe a route `router` does not serve, or name a lender.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::records::{Kind, Ty};

fn problem_ref() -> Value {
    json!({"$ref": "#/components/responses/Problem"})
}

/// The refusals every authenticated operation may answer, plus `extra`.
fn refusals(extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut m = Map::new();
    for (code, _) in [
        ("400", "bad request (paging, filters, body)"),
        ("401", "no valid bearer token"),
        (
            "404",
            "unknown environment, type or object (another lender's objects included)",
        ),
        (
            "429",
            "over the lender's request rate or concurrent loads (Retry-After)",
        ),
        ("503", "the store is busy; retry (Retry-After)"),
    ]
    .iter()
    .chain(extra.iter())
    {
        m.insert(code.to_string(), problem_ref());
    }
    m
}

/// `200` with `ok`, and the usual refusals.
fn answers(ok: Value) -> Value {
    let mut m = refusals(&[]);
    m.insert("200".into(), ok);
    Value::Object(m)
}

fn ok(schema: Value, media: &str) -> Value {
    json!({
        "description": "OK",
        "headers": rate_headers(),
        "content": {media: {"schema": schema}},
    })
}

fn rate_headers() -> Value {
    json!({
        "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
        "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
        "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
    })
}

fn env_param(cfg: &Config) -> Value {
    json!({
        "name": "env", "in": "path", "required": true,
        "description": "The environment (one store per environment).",
        "schema": {"type": "string", "enum": cfg.environments},
    })
}

fn paging_params() -> Vec<Value> {
    vec![
        json!({"name": "offset", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647, "default": 0}}),
        json!({"name": "limit", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}),
    ]
}

fn field_schema(ty: Ty) -> Value {
    match ty {
        Ty::Int => json!({"type": ["integer", "null"]}),
        Ty::Decimal => json!({"type": ["number", "string", "null"]}),
        _ => json!({"type": ["string", "null"]}),
    }
}

fn record_schema(kind: Kind) -> Value {
    let mut props = Map::new();
    props.insert(
        "ThreadId".into(),
        json!({"type": "string", "pattern": "^[0-9a-f]{32}$"}),
    );
    for (name, _, ty) in super::inquiry::readable(kind) {
        props.insert(name.to_string(), field_schema(ty));
    }
    json!({"type": "object", "required": ["ThreadId"], "properties": props})
}

fn entity_kinds() -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| !k.is_relation() && k.spec().table.is_some())
        .collect()
}

/// The whole API as OpenAPI 3.1, for the environments of `cfg`.
pub fn document(cfg: &Config) -> Value {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.prefix()).collect();
    let secured = json!([{"bearerAuth": []}]);
    let mut paths = Map::new();

    paths.insert("/oauth/token".into(), json!({
        "post": {
            "operationId": "token",
            "summary": "OAuth2 client credentials (RFC 6749 §4.4): an access token for one lender",
            "security": [{}, {"basicAuth": []}],
            "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object",
                "required": ["grant_type"],
                "properties": {
                    "grant_type": {"type": "string", "enum": ["client_credentials"]},
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string"},
                },
            }}}},
            "responses": {
                "200": {"description": "a token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}},
                "400": problem_ref(), "401": problem_ref(), "429": problem_ref(),
            },
        }
    }));
    paths.insert("/openapi.json".into(), json!({
        "get": {"operationId": "openapi", "summary": "This document", "security": [{}],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}
    }));
    paths.insert("/v1/schemas/{type}".into(), json!({
        "get": {
            "operationId": "schema", "summary": "JSON Schema (2020-12) of one record of a type", "security": [{}],
            "parameters": [{"name": "type", "in": "path", "required": true, "schema": {"type": "string", "enum": kinds}}],
            "responses": {
                "200": {"description": "the schema", "content": {"application/schema+json": {"schema": {"type": "object"}}}},
                "404": problem_ref(),
            },
        }
    }));

    let mut list_params = vec![env_param(cfg)];
    list_params.extend(paging_params());
    list_params.push(json!({"name": "type", "in": "query", "required": false, "schema": {"type": "string", "enum": kinds}}));
    list_params.push(json!({"name": "since", "in": "query", "required": false, "description": "loads started at or after (ISO 8601)", "schema": {"type": "string", "format": "date-time"}}));
    paths.insert("/v1/{env}/loads".into(), json!({
        "get": {
            "operationId": "listLoads", "summary": "The lender's loads (API and SFTP), newest first",
            "security": secured, "parameters": list_params,
            "responses": answers(ok(json!({"$ref": "#/components/schemas/LoadList"}), "application/json")),
        }
    }));

    let id_param = json!({"name": "id", "in": "path", "required": true, "description": "the load's Id (its result's Id)", "schema": {"type": "integer", "minimum": 1, "maximum": 9007199254740991_i64}});
    let mut submit_responses = Map::new();
    submit_responses.insert("200".into(), json!({
        "description": "a repeat of a finished load (Idempotency-Key), or finished within ?wait",
        "headers": rate_headers(),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoadDocument"}}},
    }));
    submit_responses.insert("202".into(), json!({
        "description": "queued; follow Location",
        "headers": {
            "Location": {"schema": {"type": "string"}},
            "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
            "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
            "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoadDocument"}}},
    }));
    submit_responses.extend(refusals(&[
        ("413", "body over [api] max_body_bytes"),
        ("415", "not application/json"),
        ("422", "Idempotency-Key reused with another body"),
    ]));
    paths.insert("/v1/{env}/loads/{id}".into(), json!({
        "get": {
            "operationId": "getLoad", "summary": "One load: its result document plus State",
            "security": secured, "parameters": [env_param(cfg), id_param],
            "responses": answers(ok(json!({"$ref": "#/components/schemas/LoadDocument"}), "application/json")),
        },
        "post": {
            "operationId": "submitLoad",
            "summary": "Submit a load: the JSON array a pickup file holds ({id} is the record type here)",
            "description": "The path's last segment is the record type (employees, borrowers, ...). Records as in /v1/schemas/{type}; each record's problems are part of the load's result, as for a file.",
            "security": secured,
            "parameters": [
                env_param(cfg),
                {"name": "id", "in": "path", "required": true, "description": "the record type", "schema": {"type": "string", "enum": kinds}},
                {"name": "wait", "in": "query", "required": false, "description": "seconds to wait for the result (200) before answering 202", "schema": {"type": "integer", "minimum": 0, "maximum": 60}},
                {"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"}},
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "array", "description": "records of the type (see /v1/schemas/{type})"}}}},
            "responses": submit_responses,
        },
    }));
    let mut problems_params = vec![
        env_param(cfg),
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1, "maximum": 9007199254740991_i64}}),
    ];
    problems_params.extend(paging_params());
    paths.insert("/v1/{env}/loads/{id}/problems".into(), json!({
        "get": {
            "operationId": "loadProblems", "summary": "A finished load's problems, a page at a time",
            "security": secured, "parameters": problems_params,
            "responses": answers(ok(json!({"$ref": "#/components/schemas/ProblemList"}), "application/json")),
        }
    }));
    let lookup_names = [
        "divisions",
        "positions",
        "loan_purposes",
        "loan_occupancies",
        "loan_statuses",
        "loan_types",
        "agencies",
        "structure_types",
    ];
    paths.insert("/v1/{env}/lookups/{name}".into(), json!({
        "get": {
            "operationId": "lookup", "summary": "One of the lender's lookups (as lookups/<name>.json)",
            "security": secured,
            "parameters": [env_param(cfg), {"name": "name", "in": "path", "required": true, "schema": {"type": "string", "enum": lookup_names}}],
            "responses": answers(ok(json!({"type": "array", "items": {"type": "object"}}), "application/json")),
        }
    }));

    paths.insert("/v1/{env}/quota".into(), json!({
        "get": {
            "operationId": "quota", "summary": "The lender's record quotas: limit, used, remaining, reset (empty without limits)",
            "security": secured, "parameters": [env_param(cfg)],
            "responses": answers(ok(json!({
                "type": "object", "required": ["quotas"],
                "properties": {"quotas": {"type": "array", "items": {
                    "type": "object", "required": ["name", "limit", "used", "remaining", "resets_at"],
                    "properties": {
                        "name": {"type": "string", "enum": ["daily_record_limit", "monthly_record_limit"]},
                        "limit": {"type": "integer", "minimum": 1},
                        "used": {"type": "integer", "minimum": 0},
                        "remaining": {"type": "integer", "minimum": 0},
                        "resets_at": {"type": "string"},
                    },
                }}},
            }), "application/json")),
        }
    }));

    for (name, fields) in [
        (
            "loan_positions",
            &["Account_ThreadId", "Account_ExternalId", "PositionName"][..],
        ),
        (
            "loan_borrowers",
            &["Account_ThreadId", "Account_ExternalId"][..],
        ),
        (
            "loan_brokers",
            &[
                "Broker_ThreadId",
                "Broker_IdNumber",
                "LoanOfficer_AccountThreadId",
                "LoanOfficer_AccountExternalId",
            ][..],
        ),
    ] {
        let mut params = vec![env_param(cfg)];
        params.extend(paging_params());
        params.push(json!({"name": "Loan_Number", "in": "query", "required": true, "schema": {"type": "string"}}));
        let mut props = Map::new();
        for f in ["Loan_ThreadId", "Loan_Number"].iter().chain(fields) {
            props.insert(f.to_string(), json!({"type": ["string", "null"]}));
        }
        paths.insert(format!("/v1/{{env}}/{name}"), json!({
            "get": {
                "operationId": format!("list_{name}"), "summary": format!("One loan's {name} links"),
                "security": secured, "parameters": params,
                "responses": answers(ok(json!({
                    "type": "object", "required": ["records", "_metadata"],
                    "properties": {"records": {"type": "array", "items": {"type": "object", "properties": props}}, "_metadata": {"$ref": "#/components/schemas/Metadata"}},
                }), "application/json")),
            }
        }));
    }

    for kind in entity_kinds() {
        let name = kind.prefix();
        let mut params = vec![env_param(cfg)];
        params.extend(paging_params());
        let lender_id = kind.lender_id_field().unwrap_or("ExternalId");
        let mut filters = vec![lender_id];
        if lender_id != "Email"
            && super::inquiry::readable(kind)
                .iter()
                .any(|(n, _, _)| *n == "Email")
        {
            filters.push("Email");
        }
        for f in filters {
            params.push(
                json!({"name": f, "in": "query", "required": false, "schema": {"type": "string"}}),
            );
        }
        params.push(json!({"name": "updatedSince", "in": "query", "required": false, "description": "records last written by a load that ended at or after (ISO 8601)", "schema": {"type": "string", "format": "date-time"}}));
        let rec = json!({"$ref": format!("#/components/schemas/{name}")});
        paths.insert(format!("/v1/{{env}}/{name}"), json!({
            "get": {
                "operationId": format!("list_{name}"), "summary": format!("The lender's {name}"),
                "security": secured, "parameters": params,
                "responses": answers(ok(json!({
                    "type": "object", "required": ["records", "_metadata"],
                    "properties": {"records": {"type": "array", "items": rec}, "_metadata": {"$ref": "#/components/schemas/Metadata"}},
                }), "application/json")),
            }
        }));
        paths.insert(format!("/v1/{{env}}/{name}/{{ThreadId}}"), json!({
            "get": {
                "operationId": format!("get_{name}"), "summary": format!("One of the lender's {name} by ThreadId"),
                "security": secured,
                "parameters": [env_param(cfg), {"name": "ThreadId", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}}],
                "responses": answers(ok(rec.clone(), "application/json")),
            }
        }));
    }

    let mut schemas = Map::new();
    let count_props: Map<String, Value> = crate::result::Counts::default()
        .named()
        .iter()
        .map(|(n, _)| (n.to_string(), json!({"type": "integer", "minimum": 0})))
        .collect();
    let mut load_props = json!({
        "Id": {"type": "integer", "minimum": 1},
        "PickupName": {"type": "string"},
        "ProcessedName": {"type": ["string", "null"]},
        "Source": {"type": "string", "enum": ["SFTP", "API"]},
        "DryRun": {"type": "boolean"},
        "StartedAt": {"type": "string"},
        "EndedAt": {"type": "string"},
        "SubmittedAt": {"type": "string"},
        "ErrorMessage": {"type": ["string", "null"]},
        "State": {"type": "string", "enum": ["queued", "running", "finished"]},
        "Problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
    });
    if let Some(m) = load_props.as_object_mut() {
        m.extend(count_props);
    }
    schemas.insert("LoadDocument".into(), json!({
        "type": "object",
        "description": "A load: its result file's fields (Problems only on GET of one load) plus State; a queued load has only Id, PickupName, ProcessedName, Source, SubmittedAt and State.",
        "required": ["Id", "PickupName", "Source", "State"],
        "properties": load_props,
    }));
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object", "required": ["Index", "Message"],
            "properties": {"Index": {"type": "integer"}, "Message": {"type": "string"}},
        }),
    );
    schemas.insert("Metadata".into(), json!({
        "type": "object", "required": ["offset", "limit", "total"],
        "properties": {"offset": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}, "total": {"type": "integer", "minimum": 0}},
    }));
    schemas.insert("LoadList".into(), json!({
        "type": "object", "required": ["loads", "_metadata"],
        "properties": {"loads": {"type": "array", "items": {"$ref": "#/components/schemas/LoadDocument"}}, "_metadata": {"$ref": "#/components/schemas/Metadata"}},
    }));
    schemas.insert("ProblemList".into(), json!({
        "type": "object", "required": ["problems", "_metadata"],
        "properties": {"problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}}, "_metadata": {"$ref": "#/components/schemas/Metadata"}},
    }));
    schemas.insert("Token".into(), json!({
        "type": "object", "required": ["access_token", "token_type", "expires_in"],
        "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["Bearer"]}, "expires_in": {"type": "integer", "minimum": 1}},
    }));
    schemas.insert("ProblemDetails".into(), json!({
        "type": "object", "required": ["type", "title", "status", "detail"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}},
    }));
    for kind in entity_kinds() {
        schemas.insert(kind.prefix().to_string(), record_schema(kind));
    }
    let int_header =
        |d: &str| json!({"description": d, "schema": {"type": "integer", "minimum": 0}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "bulkload Bulk Web API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Submit loads, follow them and read records. Tokens: POST /oauth/token (client credentials). Errors are application/problem+json (RFC 9457). See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "basicAuth": {"type": "http", "scheme": "basic"},
            },
            "schemas": schemas,
            "headers": {
                "X-RateLimit-Limit": int_header("requests allowed per minute for the lender"),
                "X-RateLimit-Remaining": int_header("requests left in this minute"),
                "X-RateLimit-Reset": int_header("seconds until the window resets"),
            },
            "responses": {
                "Problem": {
                    "description": "a refusal (RFC 9457)",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
                },
            },
        },
    })
}
