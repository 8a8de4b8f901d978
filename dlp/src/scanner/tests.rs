use super::*;

fn scanner() -> Scanner {
    Scanner::new(&[("employee_id".to_owned(), "EMP-[0-9]{6}".to_owned())]).unwrap()
}

fn masked(text: &str) -> (String, Findings) {
    let scanner = scanner();
    let mut text = text.to_owned();
    let mut findings = Findings::default();
    scanner.mask_text(&mut text, scanner.all(), &mut findings);
    (text, findings)
}

#[test]
fn each_detector_masks_its_values_with_a_typed_placeholder() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----";
    for (input, expected) in [
        ("ssn 123-45-6789 on file", "ssn [REDACTED:ssn] on file"),
        ("card 4111 1111 1111 1111.", "card [REDACTED:card]."),
        ("card 5500-0055-5555-5559", "card [REDACTED:card]"),
        ("amex 378282246310005", "amex [REDACTED:card]"),
        (
            "pay GB82 WEST 1234 5698 7654 32 now",
            "pay [REDACTED:iban] now",
        ),
        ("iban DE89370400440532013000", "iban [REDACTED:iban]"),
        (
            "mail ada@example.co.uk today",
            "mail [REDACTED:email] today",
        ),
        (
            &format!("key:\n{pem}\nend"),
            "key:\n[REDACTED:private_key]\nend",
        ),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [REDACTED:aws_access_key]"),
        (
            "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "gh [REDACTED:github_token]",
        ),
        (
            "gl glpat-abcdefghij0123456789",
            "gl [REDACTED:gitlab_token]",
        ),
        (
            "slack xoxb-1234567890-abcdefghij",
            "slack [REDACTED:slack_token]",
        ),
        (
            "stripe sk_live_abcdefghijklmnop1234",
            "stripe [REDACTED:stripe_key]",
        ),
        (
            "google AIzaSyA-1234567890abcdefghijklmnopqrstu",
            "google [REDACTED:google_api_key]",
        ),
        (&format!("bearer {jwt}"), "bearer [REDACTED:jwt]"),
        ("badge EMP-004217 ok", "badge [REDACTED:employee_id] ok"),
    ] {
        let (text, findings) = masked(input);
        assert_eq!(text, expected, "{input}");
        assert_eq!(
            findings.iter().map(|(_, count)| count).sum::<u32>(),
            1,
            "{input}"
        );
    }
}

#[test]
fn near_misses_are_left_alone() {
    for input in [
        "card 4111 1111 1111 1112",
        "order 1234567890123",
        "mixed 4111 1111-1111 1111",
        "ssn 000-12-3456 or 666-12-3456 or 912-12-3456",
        "iban GB82 WEST 1234 5698 7654 33",
        "not a mail: user@localhost",
        "AKIA too short AKIA123",
        "ghp_short",
        "eyJonly.one",
        "EMP-12345",
        "plain text with numbers 12 345 and dates 2026-12-03",
    ] {
        let (text, findings) = masked(input);
        assert_eq!(text, input);
        assert!(findings.is_empty(), "{input}: {findings:?}");
    }
}

#[test]
fn findings_count_every_match_by_detector_name() {
    let (text, findings) = masked("4111111111111111, 5500005555555559 and a@b.io");
    assert_eq!(
        text,
        "[REDACTED:card], [REDACTED:card] and [REDACTED:email]"
    );
    assert_eq!(
        findings.iter().collect::<Vec<_>>(),
        [("card", 2), ("email", 1)]
    );
    assert_eq!(findings.names(), "card, email");
}

#[test]
fn a_selection_runs_only_its_detectors() {
    let scanner = scanner();
    let only_cards = scanner.select(["card"]).unwrap();
    let mut text = "4111111111111111 and a@b.io".to_owned();
    let mut findings = Findings::default();
    scanner.mask_text(&mut text, only_cards, &mut findings);
    assert_eq!(text, "[REDACTED:card] and a@b.io");
    assert_eq!(scanner.select(["card", "nope"]), Err("nope"));
}

#[test]
fn a_value_split_across_fragments_is_masked_once() {
    let scanner = scanner();
    let (mut first, mut second, mut third) = (
        "card: 4111 11".to_owned(),
        "11 1111 ".to_owned(),
        "1111 thanks".to_owned(),
    );
    let mut findings = Findings::default();
    scanner.mask_fragments(
        &mut [&mut first, &mut second, &mut third],
        scanner.all(),
        &mut findings,
    );
    assert_eq!(
        (first.as_str(), second.as_str(), third.as_str()),
        ("card: [REDACTED:card]", "", " thanks")
    );
    assert_eq!(findings.iter().collect::<Vec<_>>(), [("card", 1)]);
}

#[test]
fn custom_detectors_are_validated_naming_the_field() {
    for (custom, field) in [
        (("bad", "EMP-[0-9"), "dlp.custom[0].pattern"),
        (("Bad Name", "x"), "dlp.custom[0].name"),
        (("card", "x"), "dlp.custom[0].name"),
        (("empty", "a*"), "dlp.custom[0].pattern"),
    ] {
        let error = Scanner::new(&[(custom.0.to_owned(), custom.1.to_owned())]).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { field: f, .. } if f == field),
            "{error}"
        );
    }
}
