use super::*;

const VALID: &str = r#"
connectors:
  - name: everything
    stdio: {command: node, args: [server.js, stdio]}
  - name: fast
    http: {url: "http://127.0.0.1:9001/mcp"}
virtual_servers:
  - name: combined
    auth: none
    connectors:
      - connector: everything
        prefix: "ev__"
        deny: ["get-env"]
        rename: {echo: say}
      - connector: fast
"#;

#[test]
fn a_valid_description_parses_with_defaults() {
    let spec = GatewaySpec::from_yaml(VALID, "gw.yaml").expect("valid spec");
    assert_eq!(spec.connectors.len(), 2);
    let server = &spec.virtual_servers[0];
    assert_eq!(server.auth, AuthMode::None);
    assert_eq!(server.connectors[1].prefix, None);
    assert!(matches!(
        spec.connectors[1].transport(),
        Ok(Transport::Http(_))
    ));
}

#[test]
fn auth_defaults_to_oauth() {
    let text = VALID.replace("    auth: none\n", "");
    let spec = GatewaySpec::from_yaml(&text, "gw.yaml").expect("valid spec");
    assert_eq!(spec.virtual_servers[0].auth, AuthMode::Oauth);
}

#[test]
fn an_unknown_field_names_its_path_and_line() {
    let text = VALID.replace("rename: {echo: say}", "renames: {echo: say}");
    let error = GatewaySpec::from_yaml(&text, "gw.yaml")
        .expect_err("typo must be refused")
        .to_string();
    assert!(
        error.starts_with("gw.yaml: virtual_servers[0].connectors[0]"),
        "{error}"
    );
    assert!(error.contains("renames"), "{error}");
    assert!(error.contains("line"), "{error}");
}

#[test]
fn a_reference_to_an_unknown_connector_is_refused() {
    let text = VALID.replace("- connector: fast", "- connector: slow");
    let error = GatewaySpec::from_yaml(&text, "gw.yaml")
        .expect_err("unknown connector")
        .to_string();
    assert_eq!(
        error,
        "gw.yaml: virtual_servers[0].connectors[1].connector: unknown connector `slow`"
    );
}

#[test]
fn a_connector_needs_exactly_one_transport() {
    let none = VALID.replace("    http: {url: \"http://127.0.0.1:9001/mcp\"}\n", "");
    let error = GatewaySpec::from_yaml(&none, "gw.yaml")
        .expect_err("no transport")
        .to_string();
    assert!(
        error.contains("connectors[1]: declares no transport"),
        "{error}"
    );
    let two = VALID.replace(
        "    http: {url: \"http://127.0.0.1:9001/mcp\"}\n",
        "    http: {url: \"http://127.0.0.1:9001/mcp\"}\n    sse: {url: \"http://127.0.0.1:9002/sse\"}\n",
    );
    let error = GatewaySpec::from_yaml(&two, "gw.yaml")
        .expect_err("two transports")
        .to_string();
    assert!(error.contains("more than one transport"), "{error}");
}

#[test]
fn duplicate_names_and_unsafe_names_are_refused() {
    let duplicate = VALID.replace("name: fast", "name: everything");
    let error = GatewaySpec::from_yaml(&duplicate, "gw.yaml")
        .expect_err("duplicate")
        .to_string();
    assert!(
        error.contains("duplicate connector `everything`"),
        "{error}"
    );
    let unsafe_name = VALID.replace("name: combined", "name: \"../etc\"");
    let error = GatewaySpec::from_yaml(&unsafe_name, "gw.yaml")
        .expect_err("unsafe")
        .to_string();
    assert!(error.contains("virtual_servers[0].name"), "{error}");
}

#[test]
fn an_invalid_glob_is_refused_with_its_field() {
    let text = VALID.replace("deny: [\"get-env\"]", "deny: [\"get-[env\"]");
    let error = GatewaySpec::from_yaml(&text, "gw.yaml")
        .expect_err("bad glob")
        .to_string();
    assert!(error.contains("deny: invalid glob `get-[env`"), "{error}");
}

#[test]
fn malformed_yaml_is_a_syntax_error_not_a_panic() {
    let error = GatewaySpec::from_yaml("connectors: [", "gw.yaml").expect_err("malformed");
    assert!(matches!(error, SpecError::Syntax { .. }));
}

#[test]
fn rate_limits_parse_with_an_in_process_default() {
    let text = format!(
        "{VALID}rate_limits:\n  rules:\n    - {{name: per-member, per: member, virtual_server: combined, tool: \"ev__*\", rate: 60/minute, burst: 10}}\n"
    );
    let spec = GatewaySpec::from_yaml(&text, "gw.yaml").expect("valid spec");
    assert!(spec.rate_limits.backend.redis.is_none());
    assert_eq!(spec.rate_limits.rules[0].burst, 10);
}

#[test]
fn rate_limit_errors_name_the_field() {
    let cases = [
        (
            "{name: r, per: member, virtual_server: nowhere, rate: 1/second}",
            "gw.yaml: rate_limits.rules[0].virtual_server: ",
            "unknown virtual server `nowhere`",
        ),
        (
            "{name: r, per: member, rate: 1/second, burst: 0}",
            "gw.yaml: rate_limits.rules[0].burst: ",
            "must be at least 1",
        ),
        (
            "{name: r, per: member, tool: \"[\", rate: 1/second}",
            "gw.yaml: rate_limits.rules[0].tool: ",
            "invalid glob `[`",
        ),
        (
            "{name: r, per: member, rate: 60/fortnight}",
            "gw.yaml: rate_limits.rules[0].rate: ",
            "`60/fortnight` is not a rate",
        ),
    ];
    for (rule, path, reason) in cases {
        let text = format!("{VALID}rate_limits:\n  rules:\n    - {rule}\n");
        let error = GatewaySpec::from_yaml(&text, "gw.yaml")
            .expect_err("invalid rule")
            .to_string();
        assert!(error.starts_with(path), "{error}");
        assert!(error.contains(reason), "{error}");
    }
    let text = format!(
        "{VALID}rate_limits:\n  backend: {{redis: {{url: \"redis://127.0.0.1:6379\", timeout: 1s}}}}\n  rules:\n    - {{name: r, per: member, rate: 1/second}}\n    - {{name: r, per: agent, rate: 1/second}}\n"
    );
    let error = GatewaySpec::from_yaml(&text, "gw.yaml")
        .expect_err("duplicate")
        .to_string();
    assert_eq!(
        error,
        "gw.yaml: rate_limits.rules[1].name: duplicate rule `r`"
    );
}

#[test]
fn a_dlp_section_parses_and_its_errors_name_the_field() {
    let dlp = |section: &str| format!("{VALID}dlp:\n{section}");
    let valid = dlp(r#"  custom: [{name: employee_id, pattern: "EMP-[0-9]{6}"}]
  rules:
    - virtual_server: combined
      connector: fast
      tool: "fast__*"
      input: {action: block, detectors: [card, employee_id]}
      output: {action: mask}
      hook: {url: "http://127.0.0.1:9/inspect", timeout_ms: 200, on_error: fail_closed}
"#);
    let spec = GatewaySpec::from_yaml(&valid, "gw.yaml").expect("valid dlp section");
    assert_eq!(spec.dlp.rules.len(), 1);
    for (section, field) in [
        (
            "  custom: [{name: bad, pattern: \"EMP-[\"}]\n",
            "dlp.custom[0].pattern",
        ),
        (
            "  rules: [{virtual_server: nope, output: {action: mask}}]\n",
            "dlp.rules[0].virtual_server",
        ),
        (
            "  rules: [{virtual_server: combined, connector: nope, output: {action: mask}}]\n",
            "dlp.rules[0].connector",
        ),
        (
            "  rules: [{virtual_server: combined, input: {action: mask, detectors: [visa]}}]\n",
            "dlp.rules[0].input.detectors",
        ),
        (
            "  rules: [{virtual_server: combined, output: {action: erase}}]\n",
            "dlp.rules[0].output.action",
        ),
    ] {
        let error = GatewaySpec::from_yaml(&dlp(section), "gw.yaml")
            .expect_err(section)
            .to_string();
        assert!(error.contains(field), "{section}: {error}");
    }
}

fn connector_error(block: &str) -> String {
    let yaml = format!(
        "connectors:\n  - name: crm\n    http: {{url: \"http://127.0.0.1:1/mcp\"}}\n    credentials: {block}\n"
    );
    GatewaySpec::from_yaml(&yaml, "g.yaml")
        .map(|_| String::new())
        .unwrap_or_else(|error| error.to_string())
}

#[test]
fn credentials_parse_and_errors_name_the_field() {
    assert_eq!(
        connector_error(
            "{mode: per_member, inject: {headers: {Authorization: \"Bearer {token}\"}}, \
             oauth: {client_id: c, authorization_endpoint: \"http://idp/a\", token_endpoint: \"http://idp/t\"}}"
        ),
        ""
    );
    let typo = connector_error("{mode: shared, injet: {}}");
    assert!(typo.contains("connectors[0].credentials"), "{typo}");
    let placeholder = connector_error("{mode: shared, inject: {headers: {X-Key: \"{secret}\"}}}");
    assert!(
        placeholder.contains("connectors[0].credentials.inject.headers.X-Key"),
        "{placeholder}"
    );
    let oauth = connector_error("{mode: per_member, oauth: {client_id: c}}");
    assert!(oauth.contains("connectors[0].credentials.oauth"), "{oauth}");
    let shared_oauth = connector_error(
        "{mode: shared, oauth: {client_id: c, resource: \"http://127.0.0.1:1/mcp\"}}",
    );
    assert!(shared_oauth.contains("per_member"), "{shared_oauth}");
}

#[test]
fn token_exchange_fits_http_connectors_and_nothing_stored() {
    assert_eq!(
        connector_error(
            "{mode: token_exchange, exchange: {audience: \"https://crm.example/mcp\", scopes: [read]}}"
        ),
        ""
    );
    let spec = GatewaySpec::from_yaml(
        "connectors:\n  - name: crm\n    http: {url: \"http://127.0.0.1:1/mcp\"}\n    credentials: {mode: token_exchange}\n",
        "g.yaml",
    )
    .expect("valid");
    assert_eq!(
        spec.connectors[0].exchange_audience().as_deref(),
        Some("http://127.0.0.1:1/mcp"),
        "the audience defaults to the connector's URL"
    );
    let keyed = GatewaySpec::from_yaml(
        "connectors:\n  - name: crm\n    http: {url: \"https://u:p@crm.example/mcp?api_key=k#top\"}\n    credentials: {mode: token_exchange}\n",
        "g.yaml",
    )
    .expect("valid");
    assert_eq!(
        keyed.connectors[0].exchange_audience().as_deref(),
        Some("https://crm.example/mcp"),
        "a resource identifier has no user info, query or fragment (RFC 8707 §2)"
    );
    for audience in ["crm", "https://crm.example/mcp#part"] {
        let refused = connector_error(&format!(
            "{{mode: token_exchange, exchange: {{audience: \"{audience}\"}}}}"
        ));
        assert!(
            refused.contains("connectors[0].credentials.exchange.audience"),
            "{audience}: {refused}"
        );
    }
    let stored = connector_error("{mode: token_exchange, api_key: {header: X-Key}}");
    assert!(
        stored.contains("connectors[0].credentials.api_key"),
        "{stored}"
    );
    let misplaced = connector_error("{mode: shared, exchange: {scopes: [read]}}");
    assert!(
        misplaced.contains("connectors[0].credentials.exchange"),
        "{misplaced}"
    );
    let stdio = GatewaySpec::from_yaml(
        "connectors:\n  - name: local\n    stdio: {command: /bin/true}\n    credentials: {mode: token_exchange}\n",
        "g.yaml",
    )
    .expect_err("stdio cannot take exchanged tokens")
    .to_string();
    assert!(stdio.contains("connectors[0].credentials.mode"), "{stdio}");
}
