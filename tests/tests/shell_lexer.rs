//! The shell-word lexer against BuildKit's tables (`../shared/conformance/shell`): every `A` and `U` row of
//! `envVarTest` (one word, expanded) and every line of `wordsTest` (expanded and split into fields).

use rbuild_builder::dockerfile::shell::Lexer;
use rbuild_tests::conformance_dir;

#[test]
fn env_var_table_rows_for_all_and_unix() {
    let Some(conf) = conformance_dir("env_var_table_rows_for_all_and_unix") else { return };
    let table = std::fs::read_to_string(conf.join("shell/envVarTest")).expect("read envVarTest");
    let env: Vec<(String, String)> = [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lexer = Lexer::new('\\');
    let (mut checked, mut failures) = (0, Vec::new());
    for (n, line) in table.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "line {}: {line}", n + 1);
        if !matches!(fields[0], "A" | "U") {
            continue;
        }
        checked += 1;
        let got = lexer.process_word(fields[1], &env);
        let ok = match (fields[2], &got) {
            ("error", Err(_)) => true,
            ("error", Ok(_)) => false,
            (want, Ok(w)) => w == want,
            (_, Err(_)) => false,
        };
        if !ok {
            failures.push(format!("line {}: {:?} -> {:?}, want {:?}", n + 1, fields[1], got, fields[2]));
        }
    }
    assert!(checked >= 200, "only {checked} rows read");
    assert!(failures.is_empty(), "{} of {checked} rows fail:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn words_table_every_line() {
    let Some(conf) = conformance_dir("words_table_every_line") else { return };
    let table = std::fs::read_to_string(conf.join("shell/wordsTest")).expect("read wordsTest");
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut checked, mut failures) = (0, Vec::new());
    for (n, line) in table.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(kv) = line.strip_prefix("ENV ") {
            let (k, v) = kv.trim_start_matches(' ').split_once('=').expect("ENV k=v");
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').expect("input | words");
        let input = input.trim();
        let expected = expected.trim_start_matches(' ');
        checked += 1;
        let got = lexer.process_words(input, &env);
        let ok = match (expected, &got) {
            ("error", r) => r.is_err(),
            (want, Ok(words)) => *words == want.split(',').map(str::to_string).collect::<Vec<_>>(),
            (_, Err(_)) => false,
        };
        if !ok {
            failures.push(format!("line {}: {input:?} -> {got:?}, want {expected:?}", n + 1));
        }
    }
    assert!(checked >= 20, "only {checked} lines read");
    assert!(failures.is_empty(), "{} of {checked} lines fail:\n{}", failures.len(), failures.join("\n"));
}
