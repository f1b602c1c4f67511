//! The API document on a running service: `GET /api/v1/openapi.json` answers the JSON of
//! `docs/openapi.yaml` to the roles that may read, and real answers have the documented fields.
//! (The unit tests in `src/service/api/openapi.rs` hold the document to the router and types.)

use serde_json::{Value, json};

use crate::harness::{Options, Server, TOKEN, phone};

/// The top-level fields of `value` against the schema `name` of `doc`: every field documented,
/// every required one present.
fn top_level_problems(doc: &Value, name: &str, value: &Value) -> Vec<String> {
    let schema = &doc["components"]["schemas"][name];
    let properties = schema["properties"].as_object().unwrap_or_else(|| panic!("schema {name}"));
    let object = value.as_object().unwrap_or_else(|| panic!("{name}: {value} is not an object"));
    let mut problems: Vec<String> = object.keys().filter(|k| !properties.contains_key(*k)).map(|k| format!("{name}: `{k}` is not documented")).collect();
    for required in schema["required"].as_array().into_iter().flatten() {
        if !object.contains_key(required.as_str().unwrap()) {
            problems.push(format!("{name}: required `{required}` is missing"));
        }
    }
    problems
}

#[test]
fn the_api_document_is_served_to_readers_and_fits_real_answers() {
    let tokens = format!("[{TOKEN}, {{token: viewer-token-1, role: viewer}}, {{token: provider-token-1, role: provider}}]");
    let server = Server::start(Options { tokens, ..Options::default() });

    let written: Value = serde_norway::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap()).unwrap();
    let (status, served) = server.request_with("GET", "/api/v1/openapi.json", None, Some("viewer-token-1"));
    assert_eq!(status, 200, "{served}");
    assert_eq!(served, written, "the served document is docs/openapi.yaml as JSON");
    assert_eq!(server.request_with("GET", "/api/v1/openapi.json", None, Some("provider-token-1")).0, 403);
    assert_eq!(server.request_with("GET", "/api/v1/openapi.json", None, None).0, 401);

    let (status, campaign) = server.post("/api/v1/campaigns/", json!({"name": "documented", "timezone": "America/New_York"}));
    assert_eq!(status, 201, "{campaign}");
    let id = campaign["id"].as_u64().unwrap();
    let call = server.initiate(id, &phone(1));
    let (status, duplicate) = server.post("/api/v1/initiate-call/", json!({"phone_number": phone(1), "campaign_id": id}));
    assert_eq!(status, 429, "{duplicate}");
    let answers = [
        ("Campaign", campaign),
        ("Campaign", server.get(&format!("/api/v1/campaigns/{id}/"))),
        ("CampaignStats", server.get(&format!("/api/v1/campaigns/{id}/"))["stats"].clone()),
        ("Call", call.clone()),
        ("Call", server.call(call["call_id"].as_str().unwrap())),
        ("CallPage", server.get("/api/v1/calls/")),
        ("Metrics", server.metrics()),
        ("Probe", server.request_with("GET", "/healthz", None, None).1),
        ("Error", duplicate.clone()),
        ("ErrorDetail", duplicate["error"].clone()),
    ];
    let problems: Vec<String> = answers.iter().flat_map(|(name, value)| top_level_problems(&served, name, value)).collect();
    assert!(problems.is_empty(), "answers that do not fit the document:\n{}", problems.join("\n"));
}
