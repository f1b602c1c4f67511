//! The API described as OpenAPI: `docs/openapi.yaml`, embedded in the binary and served as JSON
//! at `GET /api/v1/openapi.json`. The document defines nothing: its tests hold it to the router's
//! table (every route and method, nothing else), to the role table, and to the types the
//! handlers serialize and parse.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The document as written.
const DOCUMENT_YAML: &str = include_str!("../../../docs/openapi.yaml");

/// The document as JSON, converted once (a test checks that the conversion succeeds).
static DOCUMENT_JSON: LazyLock<Result<Vec<u8>, String>> = LazyLock::new(|| {
    let value: serde_json::Value = serde_norway::from_str(DOCUMENT_YAML).map_err(|e| e.to_string())?;
    serde_json::to_vec(&value).map_err(|e| e.to_string())
});

/// `GET openapi.json`: like every other read, for the admin and viewer roles.
pub async fn document() -> Result<Response, ApiError> {
    match &*DOCUMENT_JSON {
        Ok(json) => Ok(([(header::CONTENT_TYPE, "application/json")], json.as_slice()).into_response()),
        Err(error) => {
            tracing::error!(%error, "the embedded OpenAPI document does not convert to JSON");
            Err(ApiError::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    //! A small walker over the subset of OpenAPI 3.0 schemas the document uses (`$ref`, `type`,
    //! `properties`, `required`, `additionalProperties`, `nullable`, `enum`, `allOf`, `oneOf`,
    //! `items`, `format`), instead of a validator crate: checking shapes needs no more.

    use std::collections::{BTreeMap, BTreeSet};

    use axum::http::{Method, StatusCode};
    use serde::de::DeserializeOwned;
    use serde_json::{Map, Value, json};

    use super::super::auth::{is_open_path, role_allows};
    use super::super::error::ApiError;
    use super::super::extract::parse_json;
    use super::super::ops::ReplayManyBody;
    use super::super::views::*;
    use super::*;
    use crate::config::Role;
    use crate::core::model::{CallId, Outcome, Status};
    use crate::protocol::api;
    use crate::protocol::twilio::{CallStatus, StatusCallback};

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    fn doc() -> Value {
        serde_norway::from_str(DOCUMENT_YAML).expect("docs/openapi.yaml parses (status codes must be quoted: JSON keys are text)")
    }

    /// `(path as the router writes it, METHOD)` → `(path as documented, operation)`.
    fn operations(doc: &Value) -> BTreeMap<(String, String), (String, Value)> {
        let mut out = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let routed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    let previous = out.insert((routed.to_string(), method.to_ascii_uppercase()), (path.clone(), operation.clone()));
                    assert!(previous.is_none(), "{method} {routed} is documented twice (with and without the trailing slash)");
                }
            }
        }
        out
    }

    /// `#/components/…` → the value it points at.
    fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("only local references: {reference}"));
        doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}"))
    }

    fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => resolve(doc, reference),
            None => value,
        }
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        let schema = &doc["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        schema
    }

    fn to_json<T: serde::Serialize>(value: T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    // -----------------------------------------------------------------------------------------
    // The walker.

    #[derive(Default)]
    struct Checker {
        problems: Vec<String>,
        /// Named object schemas met, and the properties the checked values had.
        seen: BTreeMap<String, BTreeSet<String>>,
    }

    impl Checker {
        fn check(&mut self, doc: &Value, schema: &Value, value: &Value, at: &str) {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => {
                    let name = reference.rsplit('/').next().unwrap_or(reference);
                    self.check_schema(doc, Some(name), resolve(doc, reference), value, at);
                }
                None => self.check_schema(doc, None, schema, value, at),
            }
        }

        fn check_schema(&mut self, doc: &Value, name: Option<&str>, schema: &Value, value: &Value, at: &str) {
            if value.is_null() {
                if schema.get("nullable") != Some(&Value::Bool(true)) {
                    self.problems.push(format!("{at}: null, but the schema is not nullable"));
                }
                return;
            }
            for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
                self.check(doc, part, value, at);
            }
            if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
                let mut fits = Vec::new();
                let mut reasons = Vec::new();
                for alternative in alternatives {
                    let mut trial = Checker::default();
                    trial.check(doc, alternative, value, at);
                    if trial.problems.is_empty() {
                        fits.push(trial);
                    } else {
                        reasons.extend(trial.problems);
                    }
                }
                match fits.len() {
                    0 => self.problems.push(format!("{at}: fits no alternative of oneOf: {}", reasons.join("; "))),
                    1 => self.merge(fits.remove(0)),
                    _ => self.problems.push(format!("{at}: fits more than one alternative of oneOf")),
                }
            }
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                && !allowed.contains(value)
            {
                self.problems.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
            match schema.get("type").and_then(Value::as_str) {
                None => {}
                Some("object") => self.check_object(doc, name, schema, value, at),
                Some("array") => match value.as_array() {
                    Some(items) => {
                        for (index, item) in items.iter().enumerate() {
                            self.check(doc, &schema["items"], item, &format!("{at}[{index}]"));
                        }
                    }
                    None => self.problems.push(format!("{at}: {value} is not an array")),
                },
                Some("string") => match value.as_str() {
                    Some(text) => self.check_format(schema, text, at),
                    None => self.problems.push(format!("{at}: {value} is not a string")),
                },
                Some("integer") if value.is_u64() || value.is_i64() => {}
                Some("number") if value.is_number() => {}
                Some("boolean") if value.is_boolean() => {}
                Some(kind) => self.problems.push(format!("{at}: {value} is not of type {kind}")),
            }
        }

        fn check_format(&mut self, schema: &Value, text: &str, at: &str) {
            let fits = match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => text.parse::<jiff::Timestamp>().is_ok(),
                Some("uuid") => CallId::parse(text).is_some(),
                _ => true,
            };
            if !fits {
                self.problems.push(format!("{at}: `{text}` is not in format {}", schema["format"]));
            }
        }

        fn check_object(&mut self, doc: &Value, name: Option<&str>, schema: &Value, value: &Value, at: &str) {
            let Some(object) = value.as_object() else {
                self.problems.push(format!("{at}: {value} is not an object"));
                return;
            };
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(name) = name {
                self.seen.entry(name.to_string()).or_default();
            }
            for (key, field) in object {
                let at = format!("{at}.{key}");
                match (properties.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                    (Some(property), _) => {
                        if let Some(name) = name {
                            self.seen.entry(name.to_string()).or_default().insert(key.clone());
                        }
                        self.check(doc, property, field, &at);
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(other @ Value::Object(_))) => self.check(doc, other, field, &at),
                    (None, _) => self.problems.push(format!("{at}: not a property of the schema{}", name.map(|n| format!(" {n}")).unwrap_or_default())),
                }
            }
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let required = required.as_str().unwrap();
                if !object.contains_key(required) {
                    self.problems.push(format!("{at}: required `{required}` is missing"));
                }
            }
        }

        fn merge(&mut self, other: Checker) {
            self.problems.extend(other.problems);
            for (name, keys) in other.seen {
                self.seen.entry(name).or_default().extend(keys);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Routes and roles.

    #[test]
    fn the_document_has_every_route_and_method_and_nothing_else() {
        let doc = doc();
        let documented: BTreeMap<(String, String), (String, Value)> = operations(&doc);
        let routes = super::super::routes();
        let routed: BTreeSet<(String, String)> = routes.iter().map(|r| (r.path.to_string(), r.method.to_string())).collect();
        let documented_keys: BTreeSet<(String, String)> = documented.keys().cloned().collect();
        let undocumented: Vec<_> = routed.difference(&documented_keys).collect();
        let unrouted: Vec<_> = documented_keys.difference(&routed).collect();
        assert!(undocumented.is_empty(), "routes missing from docs/openapi.yaml: {undocumented:?}");
        assert!(unrouted.is_empty(), "operations in docs/openapi.yaml that the router does not have: {unrouted:?}");
        // A path documented with its trailing slash must be routed with it.
        for route in routes.iter().filter(|r| !r.trailing_slash) {
            let (documented_path, _) = &documented[&(route.path.to_string(), route.method.to_string())];
            assert_eq!(documented_path, route.path, "{} answers its exact path only", route.path);
        }
    }

    #[test]
    fn each_operation_names_the_roles_the_role_table_allows() {
        let doc = doc();
        for ((path, method), (_, operation)) in operations(&doc) {
            let open = operation.get("security") == Some(&json!([]));
            assert_eq!(open, is_open_path(&path), "{method} {path}: `security: []` exactly on the paths that take no token");
            let documented: BTreeSet<&str> = operation.get("x-roles").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let allowed: BTreeSet<&str> = if open {
                BTreeSet::new()
            } else {
                [Role::Admin, Role::Viewer, Role::Provider].into_iter().filter(|role| role_allows(*role, &method, &path)).map(Role::as_str).collect()
            };
            assert_eq!(documented, allowed, "x-roles of {method} {path}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // The document itself.

    fn references(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    out.push(reference.clone());
                }
                map.values().for_each(|v| references(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_whole_and_is_served_as_written() {
        let doc = doc();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.0")), "OpenAPI 3.0");
        let mut refs = Vec::new();
        references(&doc, &mut refs);
        for reference in &refs {
            resolve(&doc, reference);
        }
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                assert!(properties.is_some_and(|p| p.contains_key(required.as_str().unwrap())), "{name}: required {required} is not a property");
            }
        }
        // An error status is answered with the component of its name, whatever the operation.
        let by_status = [
            ("400", "BadRequest"),
            ("403", "Forbidden"),
            ("404", "NotFound"),
            ("409", "Conflict"),
            ("413", "PayloadTooLarge"),
            ("429", "Duplicate"),
            ("503", "Unavailable"),
            ("507", "InsufficientStorage"),
        ];
        for ((path, method), (_, operation)) in operations(&doc) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if let Some((_, component)) = by_status.iter().find(|(s, _)| s == status) {
                    assert_eq!(response["$ref"], json!(format!("#/components/responses/{component}")), "{method} {path} {status}");
                }
            }
        }
        let served: Value = serde_json::from_slice(DOCUMENT_JSON.as_ref().unwrap()).unwrap();
        assert_eq!(served, doc);
    }

    #[test]
    fn enumerations_match_the_code() {
        let doc = doc();
        let names = |name: &str| -> Vec<String> { schema(&doc, name)["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect() };
        assert_eq!(names("CallStatus"), Status::ALL.map(|s| s.as_str().to_string()));
        assert_eq!(names("Outcome"), Outcome::ALL.map(|o| o.as_str().to_string()));
        let twilio: Vec<String> = schema(&doc, "TwilioStatusCallback")["properties"]["CallStatus"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(twilio, CallStatus::ALL.map(|s| s.as_str().to_string()));
    }

    // -----------------------------------------------------------------------------------------
    // Response shapes: representative values of the wire types, one with every optional field
    // set and one with none, checked against the documented schema of each answer.

    fn attempt() -> api::Attempt {
        api::Attempt {
            attempt: 1,
            dialled_at: "2026-11-21T15:07:23.000Z".into(),
            provider_answered_at: Some("2026-11-21T15:07:23.120Z".into()),
            external_call_id: Some("ext-7".into()),
            provider_status: Some("ringing".into()),
            outcome: Some("RNR".into()),
            call_duration: Some(0),
            ended_at: Some("2026-11-21T15:07:50.000Z".into()),
            error: Some("busy".into()),
        }
    }

    fn call() -> api::Call {
        api::Call {
            call_id: "01a2006d-aac0-703e-8dbc-d40ce02a7c21".into(),
            campaign_id: 1,
            phone_number: "+14155550101".into(),
            status: "RETRYING".into(),
            last_outcome: Some("RNR".into()),
            attempt_count: 1,
            max_attempts: 3,
            created_at: "2026-11-21T15:07:23.000Z".into(),
            updated_at: "2026-11-21T15:07:50.000Z".into(),
            last_attempt_at: Some("2026-11-21T15:07:23.000Z".into()),
            next_retry_at: Some("2026-11-21T16:07:50.000Z".into()),
            total_call_time: 0,
            external_call_id: Some("ext-7".into()),
            error_message: Some("busy".into()),
            timezone: "America/Los_Angeles".into(),
            timezone_source: "inferred".into(),
            held_reason: Some("outside_calling_hours".into()),
            next_dial_at: Some("2026-11-22T16:00:00.000Z".into()),
            attempts: vec![attempt()],
        }
    }

    fn sparse_call() -> api::Call {
        api::Call {
            status: "INITIATED".into(),
            last_outcome: None,
            attempt_count: 0,
            last_attempt_at: None,
            next_retry_at: None,
            external_call_id: None,
            error_message: None,
            held_reason: None,
            next_dial_at: None,
            attempts: vec![api::Attempt {
                provider_answered_at: None,
                external_call_id: None,
                provider_status: None,
                outcome: None,
                call_duration: None,
                ended_at: None,
                error: None,
                ..attempt()
            }],
            ..call()
        }
    }

    fn campaign() -> api::Campaign {
        api::Campaign {
            id: 1,
            name: "Q1 leads".into(),
            description: "cold leads".into(),
            is_active: true,
            status: "active".into(),
            timezone: Some("America/New_York".into()),
            max_attempts: Some(3),
            max_concurrent_calls: Some(50),
            default_region: Some("US".into()),
            caller_id: Some("+14155550000".into()),
            created_at: "2026-11-21T15:07:23.000Z".into(),
            updated_at: "2026-11-21T15:07:23.000Z".into(),
            stats: None,
        }
    }

    fn sparse_campaign() -> api::Campaign {
        api::Campaign { timezone: None, max_attempts: None, max_concurrent_calls: None, default_region: None, caller_id: None, ..campaign() }
    }

    fn campaign_with_stats(next_dial_at: Option<String>) -> api::Campaign {
        let stats = api::CampaignStats {
            calls_by_status: [("PICKED".to_string(), 3), ("RETRYING".to_string(), 1)].into_iter().collect(),
            total_calls: 4,
            phone_count: 10,
            in_flight: 1,
            held: api::Held { paused: 0, outside_calling_hours: 2, contact_cap: 1 },
            queued: 3,
            retrying: 1,
            next_dial_at,
            cancelled_dnc: 1,
            purged: 0,
        };
        api::Campaign { stats: Some(stats), ..campaign() }
    }

    fn dead_letter(replayed_at: Option<String>) -> api::DeadLetter {
        api::DeadLetter {
            id: 3,
            call_id: call().call_id,
            campaign_id: 1,
            phone_number: "+14155550101".into(),
            attempt: 2,
            error: "connection refused".into(),
            created_at: "2026-11-21T15:07:23.000Z".into(),
            replayed_at,
        }
    }

    fn dnc_entry(campaign_id: Option<u64>, reason: Option<String>) -> api::DncEntry {
        api::DncEntry { phone_number: "+14155550101".into(), campaign_id, reason, added_at: "2026-11-21T15:07:23.000Z".into() }
    }

    fn callback_processed(next_retry_at: Option<String>) -> api::CallbackProcessed {
        api::CallbackProcessed {
            message: "Callback processed".into(),
            call_id: call().call_id,
            status: if next_retry_at.is_some() { "RETRYING" } else { "PICKED" }.into(),
            retry_scheduled: next_retry_at.is_some(),
            next_retry_at,
        }
    }

    fn metrics(full: bool) -> api::Metrics {
        let provider = api::ProviderMetrics {
            latency_ms_p50: full.then_some(120),
            latency_ms_p99: full.then_some(900),
            recent_errors: vec![api::ProviderError { at: "2026-11-21T15:07:23.000Z".into(), message: "HTTP 500 from +1******0101".into() }],
            breaker: "open".into(),
            breaker_probe_at: full.then(|| "2026-11-21T15:08:23.000Z".to_string()),
            ..Default::default()
        };
        let retention = api::RetentionMetrics {
            final_calls: "180d".into(),
            archive_dir: Some("/var/lib/callmgr/archive".into()),
            last_run_at: Some("2026-11-21T03:00:00.000Z".into()),
            last_check_at: Some("2026-11-21T15:00:00.000Z".into()),
            last_error: Some("archive folder not writable".into()),
            ..Default::default()
        };
        api::Metrics {
            current_concurrent_calls: 3,
            max_concurrent_calls: 100,
            system_status: "degraded".into(),
            queue_depth: 7,
            held_by_paused_campaigns: 0,
            held: api::Held::default(),
            cancelled_dnc: 0,
            retrying: 2,
            calls_by_status: [("INITIATED".to_string(), 7)].into_iter().collect(),
            purged: 0,
            retention: full.then_some(retention),
            recent_metrics: vec![api::DayMetrics { date: "2026-11-21".into(), avg_call_duration: 31.5, ..Default::default() }],
            rates: api::Rates { accepted_per_second: 1.5, ..Default::default() },
            series: api::Series { seconds: 2, dials: vec![1, 0], completions: vec![0, 1], cancellations: vec![0, 0] },
            provider,
            dead_letters: 1,
            writer_queue: 0,
            uptime_seconds: 60,
            awaiting_outcome: api::AwaitingOutcome::default(),
            degraded_reasons: vec!["provider unreachable".into()],
            disk: api::DiskMetrics::default(),
        }
    }

    /// `(documented path, method, status)` → representative answers. Every JSON answer with a
    /// 2xx status in the document must be here.
    fn answers() -> Vec<(&'static str, &'static str, &'static str, Vec<Value>)> {
        let full_page = |results: Vec<Value>| json!({"results": results, "next_cursor": "2"});
        let last_page = |results: Vec<Value>| json!({"results": results, "next_cursor": null});
        let campaign_answers = || vec![to_json(campaign()), to_json(sparse_campaign())];
        let call_answers = || vec![to_json(call()), to_json(sparse_call())];
        let number = api::Number {
            phone_number: "+12085550101".into(),
            timezone: "America/Boise|America/Los_Angeles".into(),
            timezone_source: "ambiguous".into(),
            added_at: "2026-11-21T15:07:23.000Z".into(),
        };
        let refused = api::RefusedNumber { index: 1, phone_number: "bad".into(), reason: "Invalid phone number format".into() };
        vec![
            ("/api/v1/campaigns/", "get", "200", vec![full_page(campaign_answers()), last_page(vec![])]),
            ("/api/v1/campaigns/", "post", "201", campaign_answers()),
            (
                "/api/v1/campaigns/{id}/",
                "get",
                "200",
                vec![to_json(campaign_with_stats(Some("2026-11-22T16:00:00.000Z".into()))), to_json(campaign_with_stats(None))],
            ),
            ("/api/v1/campaigns/{id}/", "patch", "200", campaign_answers()),
            ("/api/v1/campaigns/{id}/pause/", "post", "200", campaign_answers()),
            ("/api/v1/campaigns/{id}/resume/", "post", "200", campaign_answers()),
            ("/api/v1/campaigns/{id}/stop/", "post", "200", campaign_answers()),
            ("/api/v1/campaigns/{id}/start/", "post", "201", vec![to_json(api::Started { campaign_id: 1, queued: 9, skipped_duplicates: 1, skipped_dnc: 1 })]),
            ("/api/v1/campaigns/{id}/phone-numbers/", "get", "200", vec![full_page(vec![to_json(number)])]),
            (
                "/api/v1/phone-numbers/",
                "post",
                "201",
                vec![to_json(api::NumbersAdded {
                    campaign_id: 1,
                    created_count: 1,
                    duplicate_count: 0,
                    created_numbers: vec!["+14155550101".into()],
                    errors: vec![refused.clone()],
                })],
            ),
            ("/api/v1/initiate-call/", "post", "201", call_answers()),
            (
                "/api/v1/bulk-initiate-calls/",
                "post",
                "201",
                vec![to_json(api::BulkAccepted {
                    success: true,
                    campaign_id: 1,
                    total_requested: 2,
                    immediate_processed: 1,
                    queued_for_later: 0,
                    failed: 1,
                    call_ids: vec![call().call_id],
                    failed_numbers: vec![api::FailedNumber { phone_number: "bad".into(), reason: "Invalid phone number format".into() }],
                })],
            ),
            ("/api/v1/callback/", "put", "200", vec![to_json(callback_processed(Some("2026-11-21T16:07:50.000Z".into()))), to_json(callback_processed(None))]),
            ("/api/v1/calls/", "get", "200", vec![full_page(call_answers()), last_page(vec![])]),
            ("/api/v1/calls/{id}/", "get", "200", call_answers()),
            ("/api/v1/dnc/", "get", "200", vec![full_page(vec![to_json(dnc_entry(Some(1), Some("asked".into()))), to_json(dnc_entry(None, None))])]),
            ("/api/v1/dnc/", "post", "201", vec![to_json(api::DncAdded { added_count: 1, already_count: 1, errors: vec![refused] })]),
            ("/api/v1/dlq/", "get", "200", vec![full_page(vec![to_json(dead_letter(Some("2026-11-21T16:00:00.000Z".into()))), to_json(dead_letter(None))])]),
            ("/api/v1/dlq/replay/", "post", "200", vec![to_json(api::DeadLettersReplayed { replayed_count: 120, skipped_count: 3, remaining: 0 })]),
            ("/api/v1/dlq/{id}/replay/", "post", "200", call_answers()),
            (
                "/api/v1/providers/twilio/status",
                "post",
                "200",
                vec![
                    to_json(callback_processed(None)),
                    to_json(api::ProviderProgress { message: "Progress recorded".into(), call_id: call().call_id, provider_status: "ringing".into() }),
                ],
            ),
            ("/api/v1/metrics/", "get", "200", vec![to_json(metrics(true)), to_json(metrics(false))]),
            ("/api/v1/openapi.json", "get", "200", vec![doc()]),
            (
                "/api/v1/admin/backup/",
                "post",
                "200",
                vec![to_json(api::Backup {
                    path: "/var/lib/callmgr/backups/callmgr-20261121T150723Z.redb".into(),
                    snapshot_at: "2026-11-21T15:07:23.000Z".into(),
                    ..Default::default()
                })],
            ),
            ("/healthz", "get", "200", vec![to_json(api::Probe { status: "ok".into() })]),
            ("/readyz", "get", "200", vec![to_json(api::Probe { status: "ready".into() })]),
        ]
    }

    fn json_schema_of<'a>(doc: &'a Value, response: &'a Value) -> Option<&'a Value> {
        deref(doc, response).get("content")?.get("application/json")?.get("schema")
    }

    #[test]
    fn answers_have_the_documented_shape() {
        let doc = doc();
        let mut checker = Checker::default();
        let mut covered = BTreeSet::new();
        for (path, method, status, values) in answers() {
            let response = &doc["paths"][path][method]["responses"][status];
            let schema = json_schema_of(&doc, response).unwrap_or_else(|| panic!("{method} {path} documents no JSON answer {status}"));
            for (n, value) in values.iter().enumerate() {
                checker.check(&doc, schema, value, &format!("{} {path} {status} (sample {n})", method.to_ascii_uppercase()));
            }
            covered.insert((path.to_string(), method.to_string(), status.to_string()));
        }
        assert!(checker.problems.is_empty(), "answers that do not fit docs/openapi.yaml:\n{}", checker.problems.join("\n"));
        // Every documented property was seen in some answer: none is documented that the
        // service does not send.
        for (name, seen) in &checker.seen {
            let documented: BTreeSet<String> =
                schema(&doc, name).get("properties").and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k.clone()).collect();
            let never: Vec<&String> = documented.difference(seen).collect();
            assert!(never.is_empty(), "schema {name} documents properties no answer has: {never:?}");
        }
        // Every documented 2xx JSON answer has samples here.
        for ((_, method), (path, operation)) in operations(&doc) {
            let method = method.to_ascii_lowercase();
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('2') && json_schema_of(&doc, response).is_some() {
                    assert!(covered.contains(&(path.clone(), method.clone(), status.clone())), "no sample answer for {method} {path} {status}");
                }
            }
        }
    }

    #[test]
    fn every_error_has_the_documented_shape_and_headers() {
        let doc = doc();
        let errors = vec![
            ApiError::field("phone_number", "Invalid phone number format"),
            ApiError::BadRequest { message: "Invalid JSON".into(), field: None },
            ApiError::Unauthorized,
            ApiError::Forbidden("A viewer token may not POST".into()),
            ApiError::NotFound("Campaign not found".into()),
            ApiError::MethodNotAllowed,
            ApiError::Conflict("Campaign is stopped".into()),
            ApiError::PayloadTooLarge("too large".into()),
            ApiError::Duplicate { message: "Duplicate call".into(), call_id: CallId::parse(&call().call_id).unwrap(), retry_after_seconds: Some(30) },
            ApiError::DoNotCall { phone_number: "+14155550101".into() },
            ApiError::Unavailable("busy".into()),
            ApiError::InsufficientStorage("no room".into()),
            ApiError::Internal,
            ApiError::Other { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, message: "Expected JSON".into() },
        ];
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let components = &doc["components"]["responses"];
        let mut checker = Checker::default();
        for error in errors {
            let response = axum::response::IntoResponse::into_response(error);
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let body = runtime.block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap();
            let value: Value = serde_json::from_slice(&body).unwrap();
            checker.check(&doc, &json!({"$ref": "#/components/schemas/Error"}), &value, &format!("error {status}"));
            let component = match status.as_u16() {
                429 => Some("Duplicate"),
                503 => Some("Unavailable"),
                _ => None,
            };
            if let Some(component) = component {
                assert!(retry_after, "{status} carries Retry-After");
                assert!(components[component]["headers"].get("Retry-After").is_some(), "{component} documents Retry-After");
            }
        }
        assert!(checker.problems.is_empty(), "errors that do not fit docs/openapi.yaml:\n{}", checker.problems.join("\n"));
    }

    // -----------------------------------------------------------------------------------------
    // Request bodies: the documented properties are the fields the body type reads, the
    // documented required ones are those it cannot do without, and `additionalProperties:
    // false` is documented exactly where unknown fields are refused.

    /// The field names a `Deserialize` struct asks for, read from what serde's derive hands to
    /// `deserialize_struct` (no value is built).
    fn fields_of<T: DeserializeOwned>() -> Vec<&'static str> {
        #[derive(Debug)]
        struct Stop(Option<&'static [&'static str]>);
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("introspection stops here")
            }
        }
        impl std::error::Error for Stop {}
        impl serde::de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Stop(None)
            }
        }
        struct Fields;
        impl<'de> serde::Deserializer<'de> for Fields {
            type Error = Stop;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop(None))
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Stop> {
                Err(Stop(Some(fields)))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
                unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        match T::deserialize(Fields) {
            Err(Stop(Some(fields))) => fields.to_vec(),
            _ => panic!("{} is not a struct with named fields", std::any::type_name::<T>()),
        }
    }

    /// A value the schema accepts: its `example`, else the first of its `enum` / `oneOf` /
    /// `allOf`, else one made from its type.
    fn example(doc: &Value, schema: &Value) -> Value {
        let schema = deref(doc, schema);
        if let Some(value) = schema.get("example") {
            return value.clone();
        }
        if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
            return first.clone();
        }
        if let Some(first) = schema.get("oneOf").or_else(|| schema.get("allOf")).and_then(|e| e.get(0)) {
            return example(doc, first);
        }
        match schema["type"].as_str() {
            Some("object") => Value::Object(schema["properties"].as_object().into_iter().flatten().map(|(k, s)| (k.clone(), example(doc, s))).collect()),
            Some("array") => json!([example(doc, &schema["items"])]),
            Some("integer") => schema.get("minimum").cloned().unwrap_or(json!(1)),
            Some("number") => json!(1.5),
            Some("boolean") => json!(true),
            Some("string") => match schema["format"].as_str() {
                Some("date-time") => json!("2026-11-21T15:07:23Z"),
                Some("uuid") => json!("01a2006d-aac0-703e-8dbc-d40ce02a7c21"),
                _ => json!("text"),
            },
            _ => panic!("no example for {schema}"),
        }
    }

    fn refused_field(result: Result<(), ApiError>) -> Option<String> {
        match result {
            Err(ApiError::BadRequest { field, .. }) => field,
            _ => None,
        }
    }

    /// The problems of documenting body type `T` as schema `name`.
    fn body_problems<T: DeserializeOwned>(doc: &Value, name: &str) -> Vec<String> {
        let schema = schema(doc, name);
        let mut problems = Vec::new();
        let parse = |value: &Value| parse_json::<T>(&serde_json::to_vec(value).unwrap()).map(drop);
        let properties: BTreeSet<&str> = schema["properties"].as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
        let fields: BTreeSet<&str> = fields_of::<T>().into_iter().collect();
        if properties != fields {
            problems.push(format!("{name}: documented properties {properties:?}, but {} reads {fields:?}", std::any::type_name::<T>()));
        }
        let required: Vec<&str> = schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let full = example(doc, schema);
        if let Err(error) = parse(&full) {
            problems.push(format!("{name}: an example with every property is refused: {error:?}"));
        }
        let minimal: Map<String, Value> =
            full.as_object().unwrap().iter().filter(|(k, _)| required.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Err(error) = parse(&Value::Object(minimal.clone())) {
            problems.push(format!("{name}: an example with only the required properties is refused: {error:?}"));
        }
        for field in &required {
            let mut without = minimal.clone();
            without.remove(*field);
            if refused_field(parse(&Value::Object(without))).as_deref() != Some(*field) {
                problems.push(format!("{name}: `{field}` is documented as required, but a body without it is not refused for it"));
            }
        }
        let mut extra = full.as_object().unwrap().clone();
        extra.insert("a_field_nobody_sends".into(), json!(1));
        let strict = parse(&Value::Object(extra)).is_err();
        if strict != (schema.get("additionalProperties") == Some(&json!(false))) {
            problems.push(format!(
                "{name}: unknown fields are {}, so `additionalProperties: false` must be {}",
                if strict { "refused" } else { "ignored" },
                if strict { "documented" } else { "absent" }
            ));
        }
        problems
    }

    /// `body_problems` for one body type.
    type BodyCheck = fn(&Value, &str) -> Vec<String>;

    #[test]
    fn request_bodies_are_the_fields_the_handlers_read() {
        let doc = doc();
        let checks: Vec<(&str, &str, &str, BodyCheck)> = vec![
            ("/api/v1/campaigns/", "post", "NewCampaign", body_problems::<CreateCampaignBody>),
            ("/api/v1/campaigns/{id}/", "patch", "CampaignPatch", body_problems::<PatchCampaignBody>),
            ("/api/v1/phone-numbers/", "post", "AddNumbers", body_problems::<PhoneNumbersBody>),
            ("/api/v1/initiate-call/", "post", "InitiateCall", body_problems::<InitiateCallBody>),
            ("/api/v1/bulk-initiate-calls/", "post", "BulkInitiate", body_problems::<BulkBody>),
            ("/api/v1/callback/", "put", "Callback", body_problems::<CallbackBody>),
            ("/api/v1/dnc/", "post", "AddDnc", body_problems::<DncBody>),
            ("/api/v1/dlq/replay/", "post", "ReplayDeadLetters", body_problems::<ReplayManyBody>),
            ("/api/v1/admin/backup/", "post", "BackupRequest", body_problems::<api::BackupRequest>),
        ];
        let mut problems = Vec::new();
        let mut checked = BTreeSet::new();
        for (path, method, name, check) in &checks {
            let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
            assert_eq!(body["$ref"], json!(format!("#/components/schemas/{name}")), "{method} {path} takes {name}");
            problems.extend(check(&doc, name));
            checked.insert((path.to_string(), method.to_string()));
        }
        assert!(problems.is_empty(), "request bodies that do not match docs/openapi.yaml:\n{}", problems.join("\n"));
        checked.insert(("/api/v1/providers/twilio/status".into(), "post".into()));
        for ((_, method), (path, operation)) in operations(&doc) {
            if operation.get("requestBody").is_some() {
                let method = method.to_ascii_lowercase();
                assert!(checked.contains(&(path.clone(), method.clone())), "the body of {method} {path} is not checked against its type");
            }
        }
    }

    #[test]
    fn the_twilio_form_is_what_the_status_callback_reads() {
        let doc = doc();
        let schema = schema(&doc, "TwilioStatusCallback");
        let text = |value: Value| match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let form: Vec<(String, String)> = schema["properties"].as_object().unwrap().iter().map(|(k, s)| (k.clone(), text(example(&doc, s)))).collect();
        let full = StatusCallback::parse(&form).expect("an example with every documented field parses");
        let required: Vec<&str> = schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for (name, _) in &form {
            let without: Vec<(String, String)> = form.iter().filter(|(n, _)| n != name).cloned().collect();
            match StatusCallback::parse(&without) {
                Err(error) => assert!(required.contains(&name.as_str()) && error.field == name.as_str(), "{name}: refused when absent, so it must be required"),
                Ok(parsed) => {
                    assert!(!required.contains(&name.as_str()), "{name} is documented as required but is not");
                    assert_ne!(parsed, full, "{name} is documented but not read");
                }
            }
        }
    }
}
