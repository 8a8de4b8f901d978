use std::time::Duration;

use super::{Era, RestartPolicy, Transport, redact};

fn transport(yaml: &str) -> Result<Transport, serde_norway::Error> {
    serde_norway::from_str(yaml)
}

#[test]
fn stdio_config_fills_documented_defaults() {
    let Transport::Stdio(config) =
        transport("stdio:\n  command: node\n  args: [server.js]\n").unwrap()
    else {
        panic!("stdio expected");
    };
    assert_eq!(config.args, ["server.js"]);
    assert!(config.sandbox.enabled);
    assert_eq!(config.era, Era::Auto);
    assert_eq!(config.limits.memory_bytes, 2 << 30);
    assert_eq!(config.limits.processes, 256);
    assert_eq!(config.restart.max_failures, 5);
}

#[test]
fn unknown_connector_fields_are_rejected() {
    let error = transport("stdio:\n  command: node\n  enviroment: {}\n").unwrap_err();
    assert!(error.to_string().contains("enviroment"), "{error}");
    assert!(transport("http:\n  url: http://x/mcp\n  era: future\n").is_err());
    let two = transport("http:\n  url: http://x/mcp\nsse:\n  url: http://x/sse\n").unwrap_err();
    assert!(two.to_string().contains("exactly one"), "{two}");
}

#[test]
fn http_config_parses_era_headers_and_timeout() {
    let yaml = "http:\n  url: https://mcp.example.com/mcp\n  era: legacy\n  headers: {x-api-key: k}\n  connect_timeout: 5s\n";
    let Transport::Http(config) = transport(yaml).unwrap() else {
        panic!("http expected");
    };
    assert_eq!(config.era, Era::Legacy);
    assert_eq!(config.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.headers["x-api-key"], "k");
    assert_eq!(config.max_in_flight.get(), 256, "the documented default");
}

#[test]
fn calls_in_flight_are_bounded_by_a_positive_number() {
    let Transport::Http(config) =
        transport("http:\n  url: http://x/mcp\n  max_in_flight: 8\n").unwrap()
    else {
        panic!("http expected");
    };
    assert_eq!(config.max_in_flight.get(), 8);
    let zero = transport("http:\n  url: http://x/mcp\n  max_in_flight: 0\n").unwrap_err();
    assert!(zero.to_string().contains("nonzero"), "{zero}");
}

#[test]
fn debug_output_hides_environment_and_header_values() {
    let stdio = transport("stdio:\n  command: x\n  env: {API_TOKEN: hunter2}\n").unwrap();
    let http = transport(
        "http:\n  url: https://u:pw@h/mcp?key=abc\n  headers: {authorization: Bearer hunter2}\n",
    )
    .unwrap();
    for shown in [format!("{stdio:?}"), format!("{http:?}")] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw") && !shown.contains("abc"),
            "{shown}"
        );
    }
    assert!(format!("{stdio:?}").contains("API_TOKEN"));
}

#[test]
fn redacted_urls_keep_only_origin_and_path() {
    let url = "https://user:secret@example.com:8443/mcp?token=t#frag"
        .parse()
        .unwrap();
    assert_eq!(redact(&url), "https://example.com:8443/mcp");
}

#[test]
fn backoff_doubles_per_quick_crash_and_stops_at_the_cap() {
    let policy = RestartPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..RestartPolicy::default()
    };
    let delays: Vec<_> = (1..=5)
        .map(|failures| policy.backoff(failures).as_millis())
        .collect();
    assert_eq!(delays, [100, 200, 400, 500, 500]);
    assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(500));
}
