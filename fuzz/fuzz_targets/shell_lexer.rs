//! Any word through the Dockerfile shell lexer (with both escape characters and a few variables set).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_builder::dockerfile::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let word = String::from_utf8_lossy(data);
    let env: Vec<(String, String)> = vec![("A".into(), "a b".into()), ("EMPTY".into(), String::new())];
    for escape in ['\\', '`'] {
        let lexer = Lexer::new(escape);
        let _ = lexer.process_word(&word, &env);
        let _ = lexer.process_words(&word, &env);
    }
});
