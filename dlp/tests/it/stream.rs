//! Text arriving in pieces: a value cut anywhere is still masked.

use dlp::{CARRY, Direction, Target};
use serde_json::json;

#[test]
fn a_card_cut_at_every_position_is_masked_and_clean_text_passes_unchanged() {
    let dlp =
        super::dlp(json!({"rules": [{"virtual_server": "crm", "output": {"action": "mask"}}]}));
    let target = Target {
        virtual_server: "crm",
        connector: "db",
        tool: None,
    };
    let side = dlp.side(&target, Direction::Output).unwrap();
    let text = format!("{}card 4111 1111 1111 1111 end", "x".repeat(CARRY));
    for cut in 1..text.len() {
        let mut stream = dlp.stream(side);
        let mut out = stream.push(&text[..cut]);
        out.push_str(&stream.push(&text[cut..]));
        let (rest, findings) = stream.finish();
        out.push_str(&rest);
        assert_eq!(
            out,
            format!("{}card [REDACTED:card] end", "x".repeat(CARRY)),
            "cut at {cut}"
        );
        assert_eq!(
            findings.iter().collect::<Vec<_>>(),
            [("card", 1)],
            "cut at {cut}"
        );
    }
    let mut stream = dlp.stream(side);
    let long = "clean words ".repeat(100);
    let mut out = stream.push(&long);
    assert!(
        !out.is_empty(),
        "text beyond the carry-over window is passed on at once"
    );
    out.push_str(&stream.finish().0);
    assert_eq!(out, long);
}
