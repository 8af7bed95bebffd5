//! Property test: arbitrary input never makes the frontend panic. Random bytes and random soups of Dockerfile
//! tokens (continuations, heredocs, quotes, JSON, flags, directives, variables) go through both parser layers, the
//! AST dump, the shell lexer, the RUN --mount parser and the .dockerignore matcher. A fixed seed keeps it
//! reproducible; a failure prints the input.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rbuild_builder::context::IgnoreMatcher;
use rbuild_builder::dockerfile::{self, shell::Lexer};

/// xorshift64*: small, deterministic, good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "ENV ",
    "LABEL ",
    "ARG ",
    "SHELL ",
    "CMD ",
    "ENTRYPOINT ",
    "EXPOSE ",
    "VOLUME ",
    "USER ",
    "WORKDIR ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "NONE",
    "CMD",
    " AS ",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "`",
    "\\\n",
    "`\n",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "# check=skip=all\n",
    "<<",
    "<<-",
    "3<<",
    "EOF",
    "\nEOF\n",
    "'",
    "\"",
    "[",
    "]",
    ",",
    "[\"a\", \"b\"]",
    "[1]",
    "--",
    "--mount=",
    "type=cache,target=/x",
    "--from=",
    "--chmod=755",
    "--interval=",
    "5s",
    "=",
    "$",
    "${",
    "}",
    ":-",
    ":+",
    ":?",
    "#",
    "##",
    "%",
    "%%",
    "/",
    "//",
    "*",
    "?",
    "**",
    "!",
    "é",
    "한",
    "\u{feff}",
    "\0",
    "x",
    "a=b",
    "0",
];

fn soup(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..rng.below(60) {
        s.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes());
    }
    s
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(300)).map(|_| rng.next() as u8).collect()
}

fn exercise(bytes: &[u8]) {
    let text = dockerfile::decode(bytes);
    if let Ok(ast) = dockerfile::parse_ast("Dockerfile", &text) {
        let _ = dockerfile::dump(&ast);
    }
    if let Err(e) = dockerfile::load("Dockerfile", &text) {
        let _ = e.to_string();
    }
    let env = vec![("a".to_string(), "x y".to_string()), ("e".to_string(), String::new())];
    for escape in ['\\', '`'] {
        let mut lexer = Lexer::new(escape);
        let _ = lexer.process(&text, &env);
        lexer.raw_quotes = true;
        lexer.skip_unset_env = true;
        let _ = lexer.process_words(&text, &env);
    }
    let _ = dockerfile::parse_mount(&text);
    if let Ok(m) = IgnoreMatcher::parse(&text, ".dockerignore") {
        for path in ["a", "a/b/c", "x.md", "dir/keep"] {
            let _ = m.is_excluded(path);
            let _ = m.may_reinclude_below(path);
        }
    }
}

#[test]
fn arbitrary_input_never_panics() {
    let mut rng = Rng(0x5EED_0F2B_011D);
    for i in 0..40_000 {
        let input = if i % 3 == 0 { random_bytes(&mut rng) } else { soup(&mut rng) };
        if catch_unwind(AssertUnwindSafe(|| exercise(&input))).is_err() {
            panic!("the frontend panicked on input #{i}: {:?}", String::from_utf8_lossy(&input));
        }
    }
}
