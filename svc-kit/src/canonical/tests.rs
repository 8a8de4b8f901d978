use serde::Serialize;
use serde_json::json;

use super::{Writer, to_vec};

/// Asserts that `value` canonicalizes to exactly the bytes RFC 8785's general algorithm (the
/// crate) gives.
fn same_as_the_crate<T: Serialize>(value: &T) {
    let expected = serde_json_canonicalizer::to_vec(value).expect("canonicalizable");
    assert_eq!(
        String::from_utf8_lossy(&to_vec(value).expect("canonicalizable")),
        String::from_utf8_lossy(&expected),
    );
}

/// Says whether the one-pass writer takes `value` itself (rather than leaving it to the crate).
fn in_one_pass<T: Serialize>(value: &T) -> bool {
    value
        .serialize(Writer {
            out: &mut Vec::new(),
        })
        .is_ok()
}

#[test]
fn event_shaped_documents_canonicalize_as_the_crate_does_in_one_pass() {
    let document = json!({
        "eventId": "0193a5f0-7c1e-7000-8000-000000000001",
        "kind": "EVENT_KIND_MCP_REQUEST",
        "time": "2026-12-03T14:00:00.123456Z",
        "target": {"virtualServer": "bench", "tool": {"name": "echo", "upstreamName": "echo"}},
        "payload": {"arguments": [{"name": "text", "sizeBytes": "7"}], "requestBytes": "16"},
        "latency": "0.000412s",
        "zeta": [1, -2, 9_007_199_254_740_992_u64, -9_007_199_254_740_992_i64, null, true, false,
                 {"b": 1, "a": [], "A": {}}],
        "text": "quote \" backslash \\ controls \u{1}\u{8}\t\n\u{c}\r\u{1f} del \u{7f} é \u{1F600} /",
        "": "empty key",
    });
    assert!(in_one_pass(&document));
    same_as_the_crate(&document);
}

#[test]
fn members_sort_by_name_with_a_prefix_first() {
    // "a" < "a b" < "a!" < "a~": '"' (0x22), which ends a written key, is above ' ' and '!'.
    let document = json!({"a~": 1, "a!": 2, "a b": 3, "a": 4, "\u{7f}": 5, "B": {"z": 0, "": 1}});
    assert!(in_one_pass(&document));
    same_as_the_crate(&document);
}

#[test]
fn a_key_that_json_escapes_takes_the_crates_path() {
    // '"' (0x22) sorts before '#' (0x23), though its escape starts with '\' (0x5c).
    for document in [
        json!({"a#": 1, "a\"": 2}),
        json!({"a": 1, "a\n": 2}),
        json!({"z\\": 0, "z": 1}),
    ] {
        assert!(!in_one_pass(&document));
        same_as_the_crate(&document);
    }
}

#[test]
fn anything_else_takes_the_crates_path() {
    let float = json!({"a": 1.5});
    let non_ascii_key = json!({"\u{e000}": 1, "\u{1F600}": 2});
    let beyond_2_53 = json!([-9_007_199_254_740_993_i64]);
    let integer_keys = std::collections::BTreeMap::from([(2_u8, "two"), (10, "ten")]);
    for value in [&float, &non_ascii_key, &beyond_2_53] {
        assert!(!in_one_pass(value));
        same_as_the_crate(value);
    }
    assert!(!in_one_pass(&integer_keys));
    same_as_the_crate(&integer_keys);
    assert!(!in_one_pass(&serde_bytes_like()));
    same_as_the_crate(&serde_bytes_like());
    assert!(!in_one_pass(&(-1_i8, 'é')));
    same_as_the_crate(&(-1_i8, 'é'));
    same_as_the_crate(&json!({"nümber": 1.5, "big": 9_007_199_254_740_993_u64, "e": 1e21}));
    same_as_the_crate(&json!([0.1, -0.0, 2.0]));
}

/// A value that serializes as bytes, which serde_json writes as an array of numbers.
fn serde_bytes_like() -> impl Serialize {
    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(b"\x00\xff")
        }
    }
    Bytes
}

#[test]
fn derived_types_canonicalize_as_the_crate_does_in_one_pass() {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Call {
        tool_name: &'static str,
        attempt: u32,
        arguments: Option<serde_json::Value>,
        missing: Option<u8>,
        unit: (),
        mode: Mode,
        wrapped: Wrapped,
        letter: char,
        nested: Vec<Inner>,
        corners: Vec<Point>,
    }
    /// Fields out of order at every level, so each object is written back sorted.
    #[derive(Serialize)]
    struct Point {
        y: i32,
        x: i32,
        label: Option<Box<Point>>,
    }
    #[derive(Serialize)]
    enum Mode {
        Fast,
    }
    #[derive(Serialize)]
    struct Wrapped(i64);
    #[derive(Serialize)]
    enum Inner {
        Tagged(u16),
    }
    let call = Call {
        tool_name: "search",
        attempt: 3,
        arguments: Some(json!({"query": "x", "limit": 10})),
        missing: None,
        unit: (),
        mode: Mode::Fast,
        wrapped: Wrapped(-42),
        letter: 'é',
        nested: vec![Inner::Tagged(7)],
        corners: vec![
            Point {
                y: 1,
                x: 2,
                label: Some(Box::new(Point {
                    y: -3,
                    x: 4,
                    label: None,
                })),
            },
            Point {
                y: 5,
                x: 6,
                label: None,
            },
        ],
    };
    assert!(in_one_pass(&call));
    same_as_the_crate(&call);
}

#[test]
fn a_value_that_cannot_serialize_is_an_error() {
    struct Failing;
    impl Serialize for Failing {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    assert!(to_vec(&Failing).is_err());
}

#[test]
fn an_object_naming_a_member_twice_has_no_canonical_form() {
    struct Twice;
    impl Serialize for Twice {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap as _;
            let mut map = serializer.serialize_map(Some(2))?;
            map.serialize_entry("a", &1)?;
            map.serialize_entry("a", &2)?;
            map.end()
        }
    }
    assert!(!in_one_pass(&Twice));
    assert!(serde_json_canonicalizer::to_vec(&Twice).is_err());
    assert!(to_vec(&Twice).is_err());
}
