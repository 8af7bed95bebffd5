//! Instructions that change only the image config (ARG, ENV, LABEL, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME,
//! STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER), WORKDIR (a layer of its own when it creates its
//! directory), and the history entries they add.

use super::*;
use crate::context::clean_path;
use crate::dockerfile::CommandLine;
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
                    config::set_env(&mut self.state.config, &kv.key, &v);
                    text.push_str(&format!(" {}={v}", kv.key));
                }
                created_by = Some(text);
            }
            InstructionKind::Label(kvs) => {
                let mut text = String::from("LABEL");
                for kv in kvs {
                    let (k, v) = (self.expand(ins, &kv.key)?, self.expand(ins, &kv.value)?);
                    config::set_label(&mut self.state.config, &k, &v);
                    text.push_str(&format!(" {k}={v}"));
                }
                created_by = Some(text);
            }
            InstructionKind::Maintainer(m) => self.state.config["author"] = Value::String(m.clone()),
            InstructionKind::User(u) => {
                let u = self.expand(ins, u)?;
                created_by = Some(format!("USER {u}"));
                self.state.config["config"]["User"] = Value::String(u);
            }
            InstructionKind::Cmd(c) => {
                let argv = self.argv(c);
                self.state.config["config"]["Cmd"] = json!(argv);
                self.cmd_set = true;
            }
            InstructionKind::Entrypoint(e) => {
                let argv = e.as_ref().map(|c| self.argv(c)).unwrap_or_default();
                self.state.config["config"]["Entrypoint"] = if argv.is_empty() { Value::Null } else { json!(argv) };
                // ENTRYPOINT resets a CMD inherited from the base image.
                if !self.cmd_set {
                    self.state.config["config"]["Cmd"] = Value::Null;
                }
            }
            InstructionKind::Expose(ports) => {
                let mut keys = Vec::new();
                for p in ports {
                    // A variable may hold several ports (`EXPOSE $PORTS`, PORTS="3000 4000/udp"), as in BuildKit.
                    for word in self.expand(ins, p)?.split_whitespace() {
                        let spec = crate::dockerfile::expose::parse_port_spec(word).map_err(|e| self.fail(ins, &e))?;
                        for key in spec.ports {
                            config::add_to_set(&mut self.state.config, "ExposedPorts", &key);
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
                    config::add_to_set(&mut self.state.config, "Volumes", &v);
                    all.push(v);
                }
                created_by = Some(format!("VOLUME {}", serde_json::to_string(&all).unwrap_or_default()));
            }
            InstructionKind::StopSignal(s) => {
                let s = self.expand(ins, s)?;
                created_by = Some(format!("STOPSIGNAL {s}"));
                self.state.config["config"]["StopSignal"] = Value::String(s);
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
                self.state.config["config"]["Healthcheck"] = v;
            }
            InstructionKind::Shell(s) => self.state.config["config"]["Shell"] = json!(s),
            InstructionKind::Onbuild(expr) => {
                let mut ob = self.state.config["config"]["OnBuild"].as_array().cloned().unwrap_or_default();
                ob.push(Value::String(expr.clone()));
                self.state.config["config"]["OnBuild"] = Value::Array(ob);
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
        let base = self.state.config["created"].as_str().map(str::to_string);
        let created = match (&self.req.layers.source_date_epoch, &self.newest_step, base) {
            (Some(_), _, _) => self.created.clone(),
            (None, Some(newest), _) => newest.clone(),
            (None, None, Some(base)) => base,
            (None, None, None) => self.created.clone(),
        };
        if let Some(entries) = self.state.config["history"].as_array_mut() {
            for e in entries.iter_mut().skip(history_from) {
                e["created"] = Value::String(created.clone());
            }
        }
        self.state.config["created"] = Value::String(created);
    }

    pub(super) fn history(&mut self, created_by: String, empty_layer: bool) {
        let mut e = json!({ "created": self.created, "created_by": created_by, "comment": "rbuild" });
        if empty_layer {
            e["empty_layer"] = Value::Bool(true);
        }
        let mut h = self.state.config["history"].as_array().cloned().unwrap_or_default();
        h.push(e);
        self.state.config["history"] = Value::Array(h);
    }

    /// WORKDIR: set the working directory, and create it (a layer of its own) when the stage lacks it.
    pub(super) fn workdir_step(&mut self, ins: &Instruction, w: &str) -> Result<()> {
        let w = self.expand(ins, w)?;
        let cur = self.state.config["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        let joined = if w.starts_with('/') { w } else { format!("{}/{w}", cur.trim_end_matches('/')) };
        let joined = clean_path(&joined);
        let joined = if joined.starts_with('/') { joined } else { format!("/{joined}") };
        self.state.config["config"]["WorkingDir"] = Value::String(joined.clone());
        let created_by = format!("WORKDIR {joined}");
        // Made where the stage's links lead (`WORKDIR /bin/x` on a merged-/usr base is /usr/bin/x).
        let rel = self.resolve_in_stage(&joined, true).trim_start_matches('/').to_string();
        if rel.is_empty() || self.path_exists(&rel) {
            self.history(created_by, true);
            return Ok(());
        }
        let step = self.start(&ins.original);
        let start = Instant::now();
        let key = cache::workdir(&self.state.cache_key, &joined);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        // BuildKit creates a missing WORKDIR as the stage's USER.
        let owner = self.user_ids(ins).map_err(|e| self.step_failed(step, e))?;
        let layer_dir = self.store.tmp().path("workdir");
        let dir = layer_dir.join(&rel);
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let mut entries = collect_tree(&layer_dir)?;
        let origin = self.keep_existing_dirs(&layer_dir, &mut entries, owner, &|_| true);
        let layer = self.commit_dir(&layer_dir, entries, origin)?;
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// The argv of a command line: exec form as is, shell form through the stage's SHELL.
    pub(super) fn argv(&self, c: &CommandLine) -> Vec<String> {
        if !c.prepend_shell {
            return c.args.clone();
        }
        let mut shell: Vec<String> = self.state.config["config"]["Shell"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        shell.extend(c.args.iter().cloned());
        shell
    }
}
