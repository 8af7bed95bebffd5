//! Instructions that change only the image config (ARG, ENV, LABEL, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME,
//! STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER), WORKDIR (a layer of its own when it creates its
//! directory), and the history entries they add.

use super::*;
use crate::context::clean_path;
use crate::dockerfile::CommandLine;
use crate::dockerfile::go_quote::quote_list;
use crate::layer::collect_tree;

impl StageBuilder<'_> {
    /// A metadata instruction: the config changes, and an empty-layer history entry. They are not steps of their
    /// own in the progress (as in BuildKit).
    pub(super) fn metadata(&mut self, ins: &Instruction) -> Result<()> {
        let mut created_by: Option<String> = None;
        match &ins.kind {
            InstructionKind::Run(_)
            | InstructionKind::Copy(_)
            | InstructionKind::Add(_)
            | InstructionKind::Workdir(_) => {}
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let value = match (self.req.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(self.expand(ins, def)?),
                        (None, None) => self.meta.iter().rev().find(|(k, _)| *k == d.name).map(|(_, v)| v.clone()),
                    };
                    // A redeclared ARG keeps its place (BuildKit's `RUN |2 foo=bar2 bar=123` order;
                    // testExportedHistoryFlattenArgs).
                    match self.args.iter_mut().find(|(k, _)| *k == d.name) {
                        Some(slot) => slot.1 = value,
                        None => self.args.push((d.name.clone(), value)),
                    }
                }
            }
            InstructionKind::Env(kvs) => {
                let mut text = String::from("ENV");
                // Every value of one ENV line sees the environment from before the line (as in Docker).
                let values: Vec<String> = kvs.iter().map(|kv| self.expand(ins, &kv.value)).collect::<Result<_>>()?;
                for (kv, v) in kvs.iter().zip(values) {
                    self.state.config.set_env(&kv.key, &v);
                    text.push_str(&format!(" {}={v}", kv.key));
                }
                created_by = Some(text);
            }
            InstructionKind::Label(kvs) => {
                let mut text = String::from("LABEL");
                for kv in kvs {
                    let (k, v) = (self.expand(ins, &kv.key)?, self.expand(ins, &kv.value)?);
                    self.state.config.set_label(&k, &v);
                    text.push_str(&format!(" {k}={v}"));
                }
                created_by = Some(text);
            }
            InstructionKind::Maintainer(m) => self.state.config.set_author(m),
            InstructionKind::User(u) => {
                let u = self.expand(ins, u)?;
                created_by = Some(format!("USER {u}"));
                self.state.config.set_user(&u);
            }
            InstructionKind::Cmd(c) => {
                let argv = self.argv(c);
                created_by = Some(format!("CMD {}", quote_list(&argv)));
                self.state.config.set_cmd(Some(&argv));
                // BuildKit sets the (Docker-only) ArgsEscaped with every CMD.
                self.state.config.set_args_escaped();
                self.cmd_set = true;
            }
            InstructionKind::Entrypoint(e) => {
                let argv = e.as_ref().map(|c| self.argv(c)).unwrap_or_default();
                created_by = Some(format!("ENTRYPOINT {}", quote_list(&argv)));
                self.state.config.set_entrypoint(&argv);
                // ENTRYPOINT resets a CMD inherited from the base image.
                if !self.cmd_set {
                    self.state.config.set_cmd(None);
                }
            }
            InstructionKind::Expose(ports) => {
                let mut keys = Vec::new();
                for p in ports {
                    // A variable may hold several ports (`EXPOSE $PORTS`, PORTS="3000 4000/udp"), as in BuildKit.
                    for word in self.expand_quiet(ins, p)?.split_whitespace() {
                        let spec = crate::dockerfile::expose::parse_port_spec(word).map_err(|e| self.fail(ins, &e))?;
                        for key in spec.ports {
                            self.state.config.expose(&key);
                            keys.push(key);
                        }
                    }
                }
                // BuildKit's wording: the list of the ports, in the order of the (sorted) words.
                created_by = Some(format!("EXPOSE [{}]", keys.join(" ")));
            }
            InstructionKind::Volume(vols) => {
                let mut all = Vec::new();
                for v in vols {
                    let v = self.expand(ins, v)?;
                    self.state.config.add_volume(&v);
                    all.push(v);
                }
                // Go's `%v` of the list, as BuildKit writes it.
                created_by = Some(format!("VOLUME [{}]", all.join(" ")));
            }
            InstructionKind::StopSignal(s) => {
                let s = self.expand(ins, s)?;
                created_by = Some(format!("STOPSIGNAL {s}"));
                self.state.config.set_stop_signal(&s);
            }
            InstructionKind::Healthcheck(h) => {
                let mut v = json!({ "Test": h.test });
                for (k, n) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                ] {
                    if n != 0 {
                        v[k] = json!(n);
                    }
                }
                if h.retries != 0 {
                    v["Retries"] = json!(h.retries);
                }
                self.state.config.set_healthcheck(v);
                // Go's `%+v` of BuildKit's HealthcheckConfig.
                created_by = Some(format!(
                    "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                    h.test.join(" "),
                    go_duration(h.interval),
                    go_duration(h.timeout),
                    go_duration(h.start_period),
                    go_duration(h.start_interval),
                    h.retries
                ));
            }
            InstructionKind::Shell(s) => {
                created_by = Some(format!("SHELL [{}]", s.join(" ")));
                self.state.config.set_shell(s);
            }
            InstructionKind::Onbuild(expr) => {
                self.state.config.push_onbuild(expr);
                // A trigger is config only: BuildKit records no history entry for it.
                return Ok(());
            }
        }
        // The history entry is the instruction with its variables expanded where BuildKit expands them.
        self.history(created_by.unwrap_or_else(|| ins.original.trim().to_string()), true);
        Ok(())
    }

    /// A step of this stage ran (or its result was made) at `time`.
    pub(super) fn note_step_time(&mut self, time: &str) {
        if self.newest_step.as_deref().is_none_or(|t| t < time) {
            self.newest_step = Some(time.to_string());
        }
    }

    /// When the stage's image was made, for its config and the history entries it added: the newest time one of
    /// its steps ran — from the cache records for steps that came from the cache, so a fully cached rebuild is the
    /// same image, as with BuildKit — or, with no step, its base's; SOURCE_DATE_EPOCH wins over both.
    pub(super) fn stamp_created(&mut self, history_from: usize) {
        let base = self.state.config.created().map(str::to_string);
        let created = match (&self.req.layers.source_date_epoch, &self.newest_step, base) {
            (Some(_), _, _) => self.created.clone(),
            (None, Some(newest), _) => newest.clone(),
            (None, None, Some(base)) => base,
            (None, None, None) => self.created.clone(),
        };
        self.state.config.stamp_history(history_from, &created);
        self.state.config.set_created(&created);
    }

    pub(super) fn history(&mut self, created_by: String, empty_layer: bool) {
        let mut e = json!({ "created": self.created, "created_by": created_by, "comment": "rbuild" });
        if empty_layer {
            e["empty_layer"] = Value::Bool(true);
        }
        self.state.config.push_history(e);
    }

    /// WORKDIR: set the working directory, and create it (a layer of its own) when the stage lacks it.
    pub(super) fn workdir_step(&mut self, ins: &Instruction, w: &str) -> Result<()> {
        let w = self.expand(ins, w)?;
        let cur = self.state.config.workdir().to_string();
        let joined = if w.starts_with('/') { w } else { format!("{}/{w}", cur.trim_end_matches('/')) };
        let joined = clean_path(&joined);
        let joined = if joined.starts_with('/') { joined } else { format!("/{joined}") };
        self.state.config.set_workdir(&joined);
        let created_by = format!("WORKDIR {joined}");
        if joined == "/" {
            self.history(created_by, true);
            return Ok(());
        }
        // Any other WORKDIR is a step with a layer, an empty one when the directory exists (BuildKit's mkdir -p).
        // Named as BuildKit names it: the instruction with its variables expanded.
        let shown = self.step_text(ins, crate::dockerfile::shell::Lexer::new(self.df.escape), &self.vars());
        let step = self.start(&shown);
        let start = Instant::now();
        let key = cache::workdir(&self.state.cache_key, &joined);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        // Made where the stage's links lead (`WORKDIR /bin/x` on a merged-/usr base is /usr/bin/x); read from the
        // stage's files only now (a cache hit needs none of them).
        let rel = self.resolve_in_stage(&joined, true).trim_start_matches('/').to_string();
        if rel.is_empty() {
            return self.finish_step(&key, None, created_by, step, start);
        }
        let exists = self.path_exists(&rel);
        // BuildKit creates a missing WORKDIR as the stage's USER.
        let owner = self.user_ids(ins).map_err(|e| self.step_failed(step, e))?;
        let layer = if exists {
            Some(self.empty_layer()?)
        } else {
            let layer_dir = self.store.tmp().path("workdir");
            let dir = layer_dir.join(&rel);
            fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
            let mut entries = collect_tree(&layer_dir)?;
            let origin = self.keep_existing_dirs(&layer_dir, &mut entries, owner, &|_| true);
            self.commit_dir(&layer_dir, entries, origin)?
        };
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// The argv of a command line: exec form as is, shell form through the stage's SHELL.
    pub(super) fn argv(&self, c: &CommandLine) -> Vec<String> {
        if !c.prepend_shell {
            return c.args.clone();
        }
        let mut shell = self.state.config.shell();
        shell.extend(c.args.iter().cloned());
        shell
    }
}

/// Go's `time.Duration.String()` of `nanos`: `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`.
fn go_duration(n: u64) -> String {
    if n == 0 {
        return "0s".into();
    }
    let sign = "";
    let trim = |whole: u64, frac: u64, digits: usize, unit: &str| {
        let f = format!("{frac:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() { format!("{sign}{whole}{unit}") } else { format!("{sign}{whole}.{f}{unit}") }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return trim(n / 1_000, n % 1_000, 3, "\u{b5}s");
    }
    if n < 1_000_000_000 {
        return trim(n / 1_000_000, n % 1_000_000, 6, "ms");
    }
    let secs = n / 1_000_000_000;
    let frac = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let seconds = trim(s, frac, 9, "s");
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}"),
        (0, m) => format!("{sign}{m}m{seconds}"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_go_prints_them() {
        for (n, s) in [
            (0, "0s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (1_500_000_000, "1.5s"),
            (500_000_000, "500ms"),
            (1_500, "1.5\u{b5}s"),
            (12, "12ns"),
        ] {
            assert_eq!(super::go_duration(n), s);
        }
    }
}
