//! `.dockerignore` semantics, written from Docker's documented behaviour: patterns anchored at the context root and
//! cleaned as paths, `*`/`?` within one segment, `**` across segments, a matched directory excludes its contents,
//! `!` re-includes, the last match wins, `#` comments, and `<Dockerfile>.dockerignore` preferred.

use rbuild_builder::context::{IgnoreMatcher, find_ignore_file};
use rbuild_tests::TempDir;

/// (patterns, path, excluded?)
const CASES: &[(&[&str], &str, bool)] = &[
    // Anchoring and path cleaning.
    (&["foo"], "foo", true),
    (&["foo"], "foo/bar", true),
    (&["foo"], "bar/foo", false),
    (&["foo"], "foobar", false),
    (&["/foo"], "foo", true),
    (&["foo/"], "foo/x", true),
    (&["./foo"], "foo", true),
    (&["foo/../bar"], "bar", true),
    (&["foo//bar/."], "foo/bar", true),
    (&["a/b"], "a", false),
    (&["a/b"], "a/b/c", true),
    (&["../x"], "x", false),
    // * and ? stay inside one segment.
    (&["*.md"], "README.md", true),
    (&["*.md"], "docs/a.md", false),
    (&["*/temp*"], "somedir/temporary.txt", true),
    (&["*/temp*"], "somedir/temp", true),
    (&["*/temp*"], "temp", false),
    (&["*/temp*"], "a/b/temp", false),
    (&["*/*/temp*"], "somedir/subdir/temporary.txt", true),
    (&["*/*/temp*"], "somedir/temporary.txt", false),
    (&["temp?"], "tempa", true),
    (&["temp?"], "temp", false),
    (&["temp?"], "tempab", false),
    (&["a?c"], "a/c", false),
    (&["a*c"], "a/c", false),
    (&["a*c"], "abbc", true),
    (&["a/*/c"], "a/b/c", true),
    (&["a/*/c"], "a/b/d/c", false),
    (&["*"], "anything", true),
    (&["*"], "dir/file", true),
    (&["*/"], "x/y", true),
    (&["?"], "a", true),
    (&["?"], "ab", false),
    (&["?"], "a/b", true),
    // ** matches any number of directories, including none.
    (&["**"], "a/b/c", true),
    (&["**/*.md"], "docs/a.md", true),
    (&["**/*.md"], "a.md", true),
    (&["**/*.md"], "a/b/c/d.md", true),
    (&["**/*.md"], "a/b/c/d.txt", false),
    (&["dir/**"], "dir/a/b", true),
    (&["dir/**"], "dir", false),
    (&["dir/**/x"], "dir/x", true),
    (&["dir/**/x"], "dir/a/b/x", true),
    (&["dir/**/x"], "dir/a/b/y", false),
    (&["**/dir"], "a/b/dir/file", true),
    (&["**/node_modules"], "a/node_modules/x", true),
    (&["**/a/**/b"], "x/a/y/z/b", true),
    (&["**/a/**/b"], "x/a/y/z/c", false),
    // Exceptions and the last match winning.
    (&["*.md", "!README.md"], "README.md", false),
    (&["*.md", "!README.md"], "CHANGES.md", true),
    (&["*.md", "!README*.md", "README-secret.md"], "README-secret.md", true),
    (&["*.md", "!README*.md", "README-secret.md"], "README-public.md", false),
    (&["*.md", "README-secret.md", "!README*.md"], "README-secret.md", false),
    (&["dir", "!dir/keep"], "dir/keep", false),
    (&["dir", "!dir/keep"], "dir/other", true),
    (&["dir", "!dir/keep"], "dir/keep/sub", false),
    (&["!foo"], "foo", false),
    (&["foo", "!foo", "foo"], "foo", true),
    (&["*.log", "!important.log"], "important.log", false),
    (&["*.log", "!important.log"], "logs/x.log", false),
    (&["**/*.txt", "!**/keep.txt"], "d/keep.txt", false),
    (&["**/*.txt", "!**/keep.txt"], "d/drop.txt", true),
    (&["*", "!src"], "src/main.rs", false),
    (&["*", "!src"], "target/x", true),
    // Escapes and character classes.
    (&["foo\\*"], "foo*", true),
    (&["foo\\*"], "foox", false),
    (&["[abc].txt"], "b.txt", true),
    (&["[abc].txt"], "d.txt", false),
    (&["[a-c].txt"], "c.txt", true),
    (&["[^a].txt"], "b.txt", true),
    (&["[^a].txt"], "a.txt", false),
    (&["[!a].txt"], "!.txt", true),
    (&["[!a].txt"], "b.txt", false),
    // Comments, blank lines, white space, names.
    (&["#foo"], "#foo", false),
    (&["# comment", "foo"], "foo", true),
    (&["", "   ", "foo"], "foo", true),
    (&[" foo "], "foo", true),
    (&["a b"], "a b", true),
    (&["ünïcode*"], "ünïcode-x", true),
    (&[".git"], ".git/config", true),
    (&["Dockerfile"], "Dockerfile", true),
];

#[test]
fn documented_semantics_table() {
    assert!(CASES.len() >= 60, "the table must hold at least 60 cases, has {}", CASES.len());
    let mut failures = Vec::new();
    for (patterns, path, want) in CASES {
        let m = IgnoreMatcher::from_patterns(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
        let got = m.is_excluded(path);
        if got != *want {
            failures.push(format!("patterns {patterns:?} path {path:?}: excluded={got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn file_format_bom_crlf_and_comments() {
    let m = IgnoreMatcher::parse("\u{feff}foo\r\n# bar\r\n\r\nbaz\r\n", ".dockerignore").unwrap();
    assert!(m.is_excluded("foo"));
    assert!(!m.is_excluded("bar"));
    assert!(m.is_excluded("baz"));
    assert_eq!(m.patterns().len(), 2);
}

#[test]
fn bad_patterns_are_errors_naming_file_and_line() {
    for (text, reason) in [("ok\n!\n", "lone '!'"), ("ok\n[abc\n", "unclosed"), ("x\\", "trailing backslash")] {
        let e = IgnoreMatcher::parse(text, "ctx/.dockerignore").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("ctx/.dockerignore:"), "{msg}");
        assert!(msg.contains(reason), "{msg}");
    }
    let e = IgnoreMatcher::parse("a\nb\n[z-a]\n", ".dockerignore").unwrap_err();
    assert_eq!(e.line, 3);
}

#[test]
fn excluded_directory_with_exception_must_be_walked() {
    let m = IgnoreMatcher::from_patterns(&["build", "!build/keep/**", "docs"]).unwrap();
    assert!(m.may_reinclude_below("build"));
    assert!(m.may_reinclude_below("build/keep"));
    assert!(!m.may_reinclude_below("docs"));
    assert!(!m.is_excluded("build/keep/a.txt"));
    assert!(m.is_excluded("build/other.txt"));
}

#[test]
fn dockerfile_specific_ignore_file_is_preferred() {
    let dir = TempDir::new("ignore-file");
    let ctx = dir.path();
    let dockerfile = dir.write("sub/app.Dockerfile", "FROM scratch\n");
    assert_eq!(find_ignore_file(ctx, &dockerfile), None);
    dir.write(".dockerignore", "general\n");
    assert_eq!(find_ignore_file(ctx, &dockerfile), Some(ctx.join(".dockerignore")));
    let specific = dir.write("sub/app.Dockerfile.dockerignore", "specific\n");
    assert_eq!(find_ignore_file(ctx, &dockerfile), Some(specific));
}
