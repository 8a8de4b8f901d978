//! RFC 8785 (JCS) canonical JSON of an event document, written directly when that is plainly
//! the same as the general algorithm, and by `serde_json_canonicalizer` otherwise.
//!
//! The crate serializes every object key to JSON, parses it back and collects it as UTF-16 to
//! sort it, with a buffer per member: about 100,000 instructions per audit event, the largest
//! single cost of ingest. An event document's keys are proto3 JSON field names (ASCII, for
//! which UTF-16 order is byte order) and its numbers are small integers (int64 values are
//! strings in proto3 JSON), so the direct path covers every event; any other document takes
//! the crate's path, so the bytes never differ.

use serde_json::Value;

/// Largest integer JCS writes exactly as it is (2^53: beyond it numbers are IEEE doubles).
const EXACT_INTEGER: u64 = 1 << 53;

/// Returns the RFC 8785 canonical form of `document`.
pub(crate) fn to_vec(document: &Value) -> serde_json::Result<Vec<u8>> {
    if is_plain(document) {
        let mut out = Vec::with_capacity(1024);
        write(document, &mut out)?;
        Ok(out)
    } else {
        serde_json_canonicalizer::to_vec(document)
    }
}

/// Says whether every key is ASCII and every number an integer JCS writes as serde_json does.
fn is_plain(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(number) => {
            number.as_u64().is_some_and(|n| n <= EXACT_INTEGER)
                || number
                    .as_i64()
                    .is_some_and(|n| n.unsigned_abs() <= EXACT_INTEGER)
        }
        Value::Array(items) => items.iter().all(is_plain),
        Value::Object(members) => members
            .iter()
            .all(|(key, value)| key.is_ascii() && is_plain(value)),
    }
}

/// Writes a plain value: members sorted by key, no whitespace, serde_json's string escapes
/// (the same as JCS: `\b \t \n \f \r \" \\`, other controls as lowercase `\u00xx`).
fn write(value: &Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (index, (key, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write(member, out)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::to_vec;

    fn same_as_the_crate(document: &serde_json::Value) {
        let expected = serde_json_canonicalizer::to_vec(document).expect("canonicalizable");
        assert_eq!(
            String::from_utf8_lossy(&to_vec(document).expect("canonicalizable")),
            String::from_utf8_lossy(&expected),
            "for {document}"
        );
    }

    #[test]
    fn event_shaped_documents_canonicalize_as_the_crate_does() {
        same_as_the_crate(&json!({
            "eventId": "0193a5f0-7c1e-7000-8000-000000000001",
            "kind": "EVENT_KIND_MCP_REQUEST",
            "time": "2026-12-03T14:00:00.123456Z",
            "target": {"virtualServer": "bench", "tool": {"name": "echo", "upstreamName": "echo"}},
            "payload": {"arguments": [{"name": "text", "sizeBytes": "7"}], "requestBytes": "16"},
            "latency": "0.000412s",
            "zeta": [1, -2, 9_007_199_254_740_992_u64, null, true, false, {"b": 1, "a": [], "A": {}}],
            "text": "quote \" backslash \\ controls \u{1}\u{8}\t\n\u{c}\r\u{1f} del \u{7f} é \u{1F600} /",
            "": "empty key",
        }));
    }

    #[test]
    fn anything_else_takes_the_crates_path() {
        same_as_the_crate(&json!({"nümber": 1.5, "big": 9_007_199_254_740_993_u64, "e": 1e21}));
        same_as_the_crate(&json!({"\u{e000}": 1, "\u{1F600}": 2, "a": 2.0}));
        same_as_the_crate(&json!([-9_007_199_254_740_993_i64, 0.1, -0.0]));
    }
}
