//! Go's `strconv.Quote`, which BuildKit's AST dump format uses for every argument.
//!
//! Printable characters are kept, `"` and `\` are escaped, the C escapes `\a \b \f \n \r \t \v` are used, other
//! control characters become `\xNN`, and non-printable non-ASCII characters become `\uNNNN` / `\UNNNNNNNN`.
//! "Printable" follows Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and the ASCII space);
//! Rust's standard library has no general-category table, so the non-printable set here is: control characters,
//! white space other than U+0020, the format (Cf) characters, private-use characters and noncharacters.

/// Quote `s` exactly as Go's `strconv.Quote` does (within the printable-set approximation above).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' ' => out.push(' '),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

fn is_printable(c: char) -> bool {
    if c.is_control() || (c.is_whitespace() && c != ' ') {
        return false;
    }
    let u = c as u32;
    let format_chars = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD
        | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private_or_nonchar =
        matches!(u, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFDD0..=0xFDEF) || (u & 0xFFFE) == 0xFFFE;
    !(format_chars || private_or_nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a b"), r#""a b""#);
        assert_eq!(quote("\" \\ / \u{8} \u{c} \n \r \t \0"), r#""\" \\ / \b \f \n \r \t \x00""#);
        assert_eq!(quote("♥☃한국어"), "\"♥☃한국어\"");
        assert_eq!(quote("\u{a0}\u{feff}\u{7f}"), r#""\u00a0\ufeff\x7f""#);
        assert_eq!(quote("\u{10ffff}"), r#""\U0010ffff""#);
        assert_eq!(quote_list(&["--a=1".into(), "--b".into()]), r#"["--a=1" "--b"]"#);
    }
}
