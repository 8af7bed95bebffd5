//! `rbuild debug parse` against BuildKit's parser golden cases (`../shared/conformance/dockerfile-parser`): every
//! case's dump equals its `result` byte for byte, and every negative case fails with an error.

use std::path::Path;

use rbuild_tests::{conformance_dir, run_rbuild};

fn case_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir).expect("read cases").map(|e| e.expect("entry").path()).collect();
    dirs.sort();
    dirs
}

#[test]
fn parser_golden_cases_match_byte_for_byte() {
    let Some(conf) = conformance_dir("parser_golden_cases_match_byte_for_byte") else { return };
    let cases = case_dirs(&conf.join("dockerfile-parser/cases"));
    assert_eq!(cases.len(), 33, "expected the 33 BuildKit parser cases");
    let mut failures = Vec::new();
    for case in &cases {
        let dockerfile = case.join("Dockerfile");
        let out = run_rbuild(&["debug", "parse", dockerfile.to_str().expect("utf-8 path")], None, None);
        let expected = std::fs::read(case.join("result")).expect("read result");
        if !out.status.success() || out.stdout != expected {
            failures.push(format!(
                "{}: exit {:?}\n--- expected\n{}--- got\n{}{}",
                case.display(),
                out.status.code(),
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn parser_negative_cases_fail_with_an_error() {
    let Some(conf) = conformance_dir("parser_negative_cases_fail_with_an_error") else { return };
    let cases = case_dirs(&conf.join("dockerfile-parser/negative"));
    assert_eq!(cases.len(), 4, "expected the 4 BuildKit negative cases");
    for case in &cases {
        let dockerfile = case.join("Dockerfile");
        let out = run_rbuild(&["debug", "parse", dockerfile.to_str().expect("utf-8 path")], None, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted:\n{}", case.display(), String::from_utf8_lossy(&out.stdout));
        assert!(out.stdout.is_empty(), "{} printed an AST on failure", case.display());
        assert!(stderr.starts_with("error: "), "{}: no error message: {stderr}", case.display());
        assert!(stderr.contains("Dockerfile"), "{}: the error does not name the file: {stderr}", case.display());
    }
}
