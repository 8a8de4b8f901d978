//! Discrete messages of one call: a value cut between messages is masked, each message is
//! passed on whole and in order, and a message that cannot start a value is not held.

use dlp::{Direction, Dlp, MAX_HELD, MessageRun, Side, Target};
use serde_json::json;

fn masking(detectors: Option<&[&str]>) -> (Dlp, Side) {
    let output = match detectors {
        Some(names) => json!({"action": "mask", "detectors": names}),
        None => json!({"action": "mask"}),
    };
    let dlp = super::dlp(json!({"rules": [{"virtual_server": "crm", "output": output}]}));
    let target = Target {
        virtual_server: "crm",
        connector: "db",
        tool: None,
    };
    let side = dlp.side(&target, Direction::Output).unwrap();
    (dlp, side)
}

/// Relays `messages` through one run and returns what the client receives, in order.
fn relay(dlp: &Dlp, side: Side, messages: &[&str]) -> Vec<(usize, String)> {
    let mut run = MessageRun::default();
    let mut passed = Vec::new();
    for (index, text) in messages.iter().enumerate() {
        passed.extend(run.push(dlp, side, index, (*text).to_owned()));
    }
    passed.extend(run.finish(dlp, side));
    passed
}

#[test]
fn a_card_cut_between_two_messages_at_every_position_is_masked_once() {
    let (dlp, side) = masking(None);
    let text = "paid with 4111 1111 1111 1111 today";
    for cut in 1..text.len() {
        let passed = relay(&dlp, side, &[&text[..cut], &text[cut..]]);
        let indices: Vec<usize> = passed.iter().map(|(index, _)| *index).collect();
        assert_eq!(indices, [0, 1], "cut at {cut}: both messages, in order");
        let joined: String = passed.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(joined, "paid with [REDACTED:card] today", "cut at {cut}");
    }
}

#[test]
fn a_value_spread_over_many_small_messages_is_masked() {
    let (dlp, side) = masking(None);
    let pieces = ["key ", "AKIA", "IOSF", "ODNN", "7EXA", "MPLE", " rotated"];
    let passed = relay(&dlp, side, &pieces);
    assert_eq!(passed.len(), pieces.len());
    let texts: Vec<&str> = passed.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "key ",
            "[REDACTED:aws_access_key]",
            "",
            "",
            "",
            "",
            " rotated"
        ]
    );
    let mut run = MessageRun::default();
    for (index, piece) in pieces.iter().enumerate() {
        run.push(&dlp, side, index, (*piece).to_owned());
    }
    run.finish(&dlp, side);
    assert_eq!(
        run.take_findings().iter().collect::<Vec<_>>(),
        [("aws_access_key", 1)],
        "findings name the detector and count the value once"
    );
}

#[test]
fn a_message_that_cannot_start_a_value_is_passed_on_at_once() {
    let (dlp, side) = masking(None);
    let mut run = MessageRun::default();
    let passed = run.push(&dlp, side, 0, "step 1 of 3: connecting…".to_owned());
    assert_eq!(passed, [(0, "step 1 of 3: connecting…".to_owned())]);
    let passed = run.push(&dlp, side, 1, "fetched rows; ".to_owned());
    assert_eq!(passed, [(1, "fetched rows; ".to_owned())]);
}

#[test]
fn a_message_whose_tail_could_start_a_value_waits_for_the_next_and_nothing_is_lost() {
    let (dlp, side) = masking(Some(&["card"]));
    let mut run = MessageRun::default();
    assert!(
        run.push(&dlp, side, 0, "card 4111 1111".to_owned())
            .is_empty(),
        "eight digits could be the start of a card number"
    );
    assert!(
        run.push(&dlp, side, 1, String::new()).is_empty(),
        "a message without text stays behind the held one, so order is kept"
    );
    let passed = run.push(&dlp, side, 2, " is done.".to_owned());
    assert_eq!(
        passed,
        [
            (0, "card 4111 1111".to_owned()),
            (1, String::new()),
            (2, " is done.".to_owned())
        ],
        "not a card after all: passed on unchanged"
    );
    assert!(run.take_findings().is_empty());
}

#[test]
fn the_end_of_the_call_passes_on_what_is_held() {
    let (dlp, side) = masking(None);
    let mut run = MessageRun::default();
    assert!(
        run.push(&dlp, side, 0, "mail alice@example.com".to_owned())
            .is_empty()
    );
    assert_eq!(
        run.finish(&dlp, side),
        [(0, "mail [REDACTED:email]".to_owned())]
    );
    assert!(run.finish(&dlp, side).is_empty());
}

#[test]
fn text_less_messages_behind_an_open_tail_are_bounded() {
    let (dlp, side) = masking(Some(&["card"]));
    let mut run = MessageRun::default();
    let mut passed = run.push(&dlp, side, 0, "4111".to_owned());
    for index in 1..=MAX_HELD {
        passed.extend(run.push(&dlp, side, index, String::new()));
    }
    assert_eq!(
        passed.len(),
        MAX_HELD + 1,
        "past the bound everything held is passed on"
    );
    assert_eq!(passed[0], (0, "4111".to_owned()));
}

#[test]
fn a_value_whole_in_each_of_several_messages_is_masked_in_each() {
    let (dlp, side) = masking(Some(&["card"]));
    let note = "charging 4111 1111 1111 1111";
    let passed = relay(&dlp, side, &[note, note, note]);
    let texts: Vec<&str> = passed.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts, ["charging [REDACTED:card]"; 3],
        "joined, \"1111charging\" has no word boundary; each message alone still shows the card"
    );
}
