//! Masking inside structured content: every string anywhere, keys excluded, text blocks joined.

use dlp::{Direction, Target};
use serde_json::json;

const TARGET: Target<'static> = Target {
    virtual_server: "crm",
    connector: "db",
    tool: Some("lookup"),
};

#[test]
fn every_string_of_a_tool_result_is_masked_and_keys_are_kept() {
    let dlp =
        super::dlp(json!({"rules": [{"virtual_server": "crm", "output": {"action": "mask"}}]}));
    let side = dlp.side(&TARGET, Direction::Output).expect("output rule");
    let mut result = json!({
        "content": [
            {"type": "text", "text": "card 4111 1111 1111 1111"},
            {"type": "resource", "resource": {"uri": "file:///x", "text": "ssn 123-45-6789"}}
        ],
        "structuredContent": {
            "customer": {"email": "ada@example.com", "cards": ["5500005555555559"], "age": 36},
            "4111111111111111": true
        },
        "isError": false
    });
    let findings = dlp.mask(&mut result, side);
    assert_eq!(
        result,
        json!({
            "content": [
                {"type": "text", "text": "card [REDACTED:card]"},
                {"type": "resource", "resource": {"uri": "file:///x", "text": "ssn [REDACTED:ssn]"}}
            ],
            "structuredContent": {
                "customer": {"email": "[REDACTED:email]", "cards": ["[REDACTED:card]"], "age": 36},
                "4111111111111111": true
            },
            "isError": false
        })
    );
    assert_eq!(
        findings.iter().collect::<Vec<_>>(),
        [("card", 2), ("email", 1), ("ssn", 1)]
    );
}

#[test]
fn a_card_split_across_consecutive_text_blocks_is_masked() {
    let dlp =
        super::dlp(json!({"rules": [{"virtual_server": "crm", "output": {"action": "mask"}}]}));
    let side = dlp.side(&TARGET, Direction::Output).unwrap();
    let mut result = json!({"content": [
        {"type": "text", "text": "your card is 4111 1111"},
        {"type": "text", "text": " 1111 1111, expiring soon"},
        {"type": "image", "data": "AAAA", "mimeType": "image/png"},
        {"type": "text", "text": "and 4111"}
    ]});
    let findings = dlp.mask(&mut result, side);
    assert_eq!(result["content"][0]["text"], "your card is [REDACTED:card]");
    assert_eq!(result["content"][1]["text"], ", expiring soon");
    assert_eq!(
        result["content"][3]["text"], "and 4111",
        "blocks apart are separate texts"
    );
    assert_eq!(findings.iter().collect::<Vec<_>>(), [("card", 1)]);
}
