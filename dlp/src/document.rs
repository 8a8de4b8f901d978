//! Walking JSON documents (arguments, results, structured content) for their text.
//!
//! Every string value anywhere is inspected; object keys are not (they are schema, not data).
//! Consecutive MCP text content blocks in one array are inspected as one text, because a
//! server may split a value across blocks, and so may a streaming producer.

use serde_json::Value;

use crate::scanner::{Findings, Scanner, Selection};

/// Masks every string in `value` in place and returns what was found.
pub(crate) fn mask(scanner: &Scanner, value: &mut Value, selection: Selection) -> Findings {
    let mut findings = Findings::default();
    visit(value, &mut |fragments| {
        scanner.mask_fragments(fragments, selection, &mut findings);
    });
    findings
}

/// Calls `inspect` with each run of text that reads as one: a lone string, or the texts of
/// consecutive `{"type": "text", "text": …}` blocks of an array.
fn visit(value: &mut Value, inspect: &mut impl FnMut(&mut [&mut String])) {
    match value {
        Value::String(text) => inspect(&mut [text]),
        Value::Array(items) => {
            let mut run: Vec<&mut String> = Vec::new();
            for item in items.iter_mut() {
                if !is_text_block(item) {
                    inspect(&mut run);
                    run.clear();
                    visit(item, inspect);
                    continue;
                }
                if let Value::Object(block) = item {
                    for (key, field) in block.iter_mut() {
                        if key == "text"
                            && let Value::String(text) = field
                        {
                            run.push(text);
                        } else {
                            visit(field, inspect);
                        }
                    }
                }
            }
            inspect(&mut run);
        }
        Value::Object(fields) => {
            for field in fields.values_mut() {
                visit(field, inspect);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn is_text_block(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("text")
        && value.get("text").is_some_and(Value::is_string)
}
