//! BuildKit's AST dump format (`rbuild debug parse`): one `(keyword ["--flags"] "arg" ...)` line per instruction,
//! arguments quoted like Go's `strconv.Quote`, an ONBUILD trigger nested in parentheses.
//!
//! BuildKit's dump does not show heredocs. rbuild appends each heredoc after the arguments as
//! `(heredoc ["fd=N" "chomp" "noexpand"] "NAME" "CONTENT")`, listing in the brackets only what differs from a plain
//! `<<NAME` (fd 0, no chomp, expansion on) and leaving the brackets out when nothing does. This form is stable.

use super::go_quote::{quote, quote_list};
use super::parser::{Ast, Heredoc, Node};

/// The dump of a whole file: one line per instruction, no trailing newline (BuildKit's `result` files add one).
pub fn dump(ast: &Ast) -> String {
    ast.nodes.iter().map(|n| format!("({})", dump_node(n))).collect::<Vec<_>>().join("\n")
}

fn dump_node(node: &Node) -> String {
    let mut s = node.keyword_lower();
    if !node.flags.is_empty() {
        s.push(' ');
        s.push_str(&quote_list(&node.flags));
    }
    if let Some(nested) = &node.nested {
        s.push_str(&format!(" ({})", dump_node(nested)));
    }
    for arg in &node.args {
        s.push(' ');
        s.push_str(&quote(arg));
    }
    for doc in &node.heredocs {
        s.push(' ');
        s.push_str(&dump_heredoc(doc));
    }
    s.trim().to_string()
}

fn dump_heredoc(doc: &Heredoc) -> String {
    let mut marks = Vec::new();
    if doc.fd != 0 {
        marks.push(format!("fd={}", doc.fd));
    }
    if doc.chomp {
        marks.push("chomp".to_string());
    }
    if !doc.expand {
        marks.push("noexpand".to_string());
    }
    let marks = if marks.is_empty() { String::new() } else { format!("{} ", quote_list(&marks)) };
    format!("(heredoc {marks}{} {})", quote(&doc.name), quote(&doc.content))
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;

    #[test]
    fn onbuild_and_heredoc_forms() {
        let ast = parse("FROM a\nONBUILD COPY --from=b x y\nRUN <<-'E'\n\tz\nE\n").unwrap();
        assert_eq!(
            dump(&ast),
            "(from \"a\")\n(onbuild (copy [\"--from=b\"] \"x\" \"y\"))\n(run \"<<-'E'\" (heredoc [\"chomp\" \"noexpand\"] \"E\" \"\\tz\\n\"))"
        );
    }
}
