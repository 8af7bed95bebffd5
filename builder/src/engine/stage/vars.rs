//! The variables a stage's instructions see: global ARGs (with build-arg overrides), the ARGs declared in the
//! stage, ENV (which wins over ARGs), and word and heredoc expansion with them.

use super::*;
use crate::dockerfile::shell::Lexer;

impl StageBuilder<'_> {
    /// The global ARGs (predefined and declared before the first FROM) with build-arg overrides.
    pub(super) fn meta_args(&self) -> Result<Vec<(String, String)>> {
        let fail = |span, message: String| -> Error {
            crate::dockerfile::DockerfileError::new(&self.req.dockerfile_name, &self.req.dockerfile_text, span, message)
                .into()
        };
        crate::engine::graph::global_args(
            self.df,
            &self.req.build_args,
            self.req.target.as_deref(),
            &self.req.platform,
            &fail,
        )
    }

    pub(super) fn expand_with(&self, ins: &Instruction, word: &str, env: &[(String, String)]) -> Result<String> {
        Lexer::new(self.df.escape).process_word(word, &env.to_vec()).map_err(|e| self.fail(ins, &e.to_string()))
    }

    /// The ARGs in scope that have values.
    pub(super) fn arg_values(&self) -> Vec<(String, String)> {
        self.args.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect()
    }

    /// The variables an instruction sees: ARGs in scope, overridden by ENV.
    pub(super) fn vars(&self) -> Vec<(String, String)> {
        let env = self.state.config.env();
        let mut v: Vec<(String, String)> =
            self.arg_values().into_iter().filter(|(k, _)| !env.iter().any(|(e, _)| e == k)).collect();
        v.extend(env);
        v
    }

    /// Expand a word of an instruction whose undefined variables BuildKit reports (UndefinedVar): COPY/ADD
    /// sources, destination and flags, ENV, LABEL, ARG defaults, USER, VOLUME, STOPSIGNAL, WORKDIR, RUN mounts.
    pub(super) fn expand(&self, ins: &Instruction, word: &str) -> Result<String> {
        let vars = self.vars();
        let expansion = Lexer::new(self.df.escape).process(word, &vars).map_err(|e| self.fail(ins, &e.to_string()))?;
        if !expansion.unmatched.is_empty() {
            self.report_undefined(ins, &expansion.unmatched, &vars)?;
        }
        Ok(expansion.word)
    }

    /// A step's name as BuildKit shows it: the instruction's first line expanded by `lexer` with `vars` (as written
    /// when it does not expand).
    pub(super) fn step_text(&self, ins: &Instruction, lexer: Lexer, vars: &[(String, String)]) -> String {
        let first_line = ins.original.lines().next().unwrap_or("").trim();
        lexer.process_word(first_line, &vars.to_vec()).unwrap_or_else(|_| first_line.to_string())
    }

    /// Expand a word BuildKit expands without checking its variables (EXPOSE, --exclude, heredoc text).
    pub(super) fn expand_quiet(&self, ins: &Instruction, word: &str) -> Result<String> {
        self.expand_with(ins, word, &self.vars())
    }

    /// BuildKit's UndefinedVar: a variable neither set nor declared with ARG in the stage, once per line and
    /// name; with `# check=error=true` the build fails on it.
    fn report_undefined(
        &self,
        ins: &Instruction,
        unmatched: &std::collections::BTreeSet<String>,
        vars: &[(String, String)],
    ) -> Result<()> {
        let line = ins.span.start_line;
        for name in unmatched {
            if self.args.iter().any(|(k, _)| k == name) {
                continue;
            }
            if !self.reported.borrow_mut().insert((line, name.clone())) {
                continue;
            }
            let hint = crate::dockerfile::suggest::closest(name, vars.iter().map(|(k, _)| k.as_str()))
                .map(|m| format!(" (did you mean ${m}?)"))
                .unwrap_or_default();
            self.raise_check(ins, "UndefinedVar", &format!("Usage of undefined variable '${name}'{hint}"))?;
        }
        Ok(())
    }

    /// A BuildKit build check found while building: nothing where `# check=skip=` (or the build arg) skips the
    /// rule, the build's error with `error=true`, else a warning line naming the Dockerfile's line.
    pub(super) fn raise_check(&self, ins: &Instruction, rule: &str, message: &str) -> Result<()> {
        let line = ins.span.start_line;
        let check = crate::dockerfile::lint::build_check(self.df, &self.req.build_args);
        if check.skip_all
            || check.skip.contains(rule)
            || crate::dockerfile::lint::skipped_at(self.df, &self.req.dockerfile_text, line, rule)
        {
            return Ok(());
        }
        if check.error {
            return Err(self.fail(ins, &format!("lint violation found for rules: {rule} ({message})")));
        }
        let text = format!("WARN: {rule}: {message} ({}:{line})", self.req.dockerfile_name);
        self.session.progress.event(&Event::Note { text: &text });
        Ok(())
    }

    /// Expand variables in a heredoc's text as BuildKit does for an unquoted COPY heredoc: escapes work (`\$` is a
    /// dollar, `\\` a backslash, a backslash before a newline leaves the newline), quotes are text
    /// (testCopyHeredocSpecialSymbols).
    pub(super) fn expand_text(&self, ins: &Instruction, text: &str) -> Result<String> {
        let e = self.df.escape;
        let mut word = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == e {
                // An escape and what it escapes go to the lexer as they are.
                word.push(c);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            } else if c == '"' || c == '\'' {
                word.push(e);
                word.push(c);
            } else {
                word.push(c);
            }
        }
        self.expand_quiet(ins, &word)
    }
}
