//! Cedar string literals for generated policy text.

/// Returns `value` as a Cedar string literal, quotes included.
pub(crate) fn string(value: &str) -> String {
    quoted(value, false)
}

/// Returns a Cedar `like` pattern literal matching strings that start with `prefix`.
pub(crate) fn prefix_pattern(prefix: &str) -> String {
    let mut literal = quoted(prefix, true);
    literal.insert(literal.len() - 1, '*');
    literal
}

// `like` patterns treat `*` as a wildcard, so a literal star is escaped there.
fn quoted(value: &str, like: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '*' if like => out.push_str("\\*"),
            character if character.is_control() => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(character)));
            }
            character => out.push(character),
        }
    }
    out.push('"');
    out
}
