//! RUN: the instruction lowered to an [`ExecRequest`] (argv with SHELL and heredocs, environment, network and
//! entitlements, mounts with their sources resolved: bind sources from the context, a named context, a stage or
//! an image; secrets and SSH sockets from the build's options), keyed, and run through the worker's executor;
//! what the step changed is committed as its layer.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::sources::describe;
use super::*;
use crate::context::{clean_path, copy};
use crate::dockerfile::{CommandLine, MountType, RunInstruction, RunMount};
use crate::engine::ports::{Changes, ExecRequest, ExitStatus, Network};

/// A heredoc script run as a file: where it is mounted in the step, and its content.
type HeredocScript = (String, String);

/// A RUN's mounts with their sources resolved, each one's part of the step's key, and directories made for them
/// (merged stages or images) to remove after the step.
struct ResolvedMounts {
    mounts: Vec<RunMount>,
    key_parts: Vec<String>,
    scratch_dirs: Vec<PathBuf>,
    /// Bind mounts of a stage's or an image's files (by index in `mounts`): keyed by the source's key, their files
    /// merged only when the step runs (`place_deferred_binds`), not for a cache hit.
    deferred: Vec<(usize, Source)>,
}

/// What an executed step left: how it ended, its last output lines, and its layer (when it succeeded and
/// changed files).
struct Executed {
    status: ExitStatus,
    /// What the executor saw that may be why a failed step failed.
    notes: Vec<String>,
    tail: Vec<String>,
    layer: Option<(LayerRef, Digest, PathBuf)>,
}

impl StageBuilder<'_> {
    /// A RUN's argv, with its heredocs as BuildKit runs them: a command that is only a heredoc is the script (run
    /// by the shell, or, starting with `#!`, as a file of its own — returned as (mount path, content)); any other
    /// command goes to the shell with its heredocs written out after it, for the shell to read.
    pub(super) fn run_argv(
        &self,
        ins: &Instruction,
        cmd: &CommandLine,
    ) -> Result<(Vec<String>, Option<HeredocScript>)> {
        if cmd.heredocs.is_empty() {
            return Ok((self.argv(cmd), None));
        }
        if !cmd.prepend_shell {
            return Err(self.fail(ins, "heredocs need the shell form of RUN"));
        }
        let text = cmd.args.join(" ");
        let only_heredoc = cmd.heredocs.len() == 1 && {
            let t = text.trim();
            t.starts_with("<<") && !t.contains(char::is_whitespace)
        };
        let shell = self.argv(&CommandLine { args: Vec::new(), prepend_shell: true, heredocs: Vec::new() });
        if only_heredoc {
            let doc = &cmd.heredocs[0];
            let content =
                if doc.chomp { crate::dockerfile::chomp_heredoc_content(&doc.content) } else { doc.content.clone() };
            if content.starts_with("#!") {
                let target = format!("/dev/pipes/{}", doc.name.replace('/', "_"));
                return Ok((vec![target.clone()], Some((target, content))));
            }
            let mut argv = shell;
            argv.push(content);
            return Ok((argv, None));
        }
        let mut script = text;
        for doc in &cmd.heredocs {
            script.push('\n');
            script.push_str(&doc.content);
            script.push_str(&doc.name);
        }
        let mut argv = shell;
        argv.push(script);
        Ok((argv, None))
    }

    /// BuildKit's history text for RUN: the build args in scope as `|N K=V ...`, then the command.
    pub(super) fn run_created_by(&self, argv: &[String]) -> String {
        let args = self.arg_values();
        let prefix = if args.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("|{} {} ", kv.len(), kv.join(" "))
        };
        // BuildKit joins the arguments with spaces for both forms.
        format!("RUN {prefix}{} # rbuild", argv.join(" "))
    }

    pub(super) fn run_step(&mut self, ins: &Instruction, run: &RunInstruction, reads: &[Source]) -> Result<()> {
        let step = self.start(&self.run_display_name(ins, run));
        let start = Instant::now();
        self.run_step_inner(ins, run, reads, step, start).map_err(|e| self.step_failed(step, e))
    }

    /// The step's name as BuildKit shows it: the instruction with the variables it knows expanded (quotes kept,
    /// unknown variables left as written), a secret mounted as an environment variable shown as `****`.
    fn run_display_name(&self, ins: &Instruction, run: &RunInstruction) -> String {
        let secret_envs: Vec<&str> =
            run.mounts.iter().filter(|m| m.kind == MountType::Secret).filter_map(|m| m.env.as_deref()).collect();
        let mut vars = self.vars();
        for (k, v) in vars.iter_mut() {
            if secret_envs.contains(&k.as_str()) {
                *v = "****".into();
            }
        }
        for name in &secret_envs {
            if !vars.iter().any(|(k, _)| k == name) {
                vars.push((name.to_string(), "****".into()));
            }
        }
        let mut lexer = crate::dockerfile::shell::Lexer::new(self.df.escape);
        lexer.raw_quotes = true;
        lexer.skip_unset_env = true;
        self.step_text(ins, lexer, &vars)
    }

    fn run_step_inner(
        &mut self,
        ins: &Instruction,
        run: &RunInstruction,
        reads: &[Source],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let (argv, script) = self.run_argv(ins, &run.command)?;
        let created_by = self.run_created_by(&argv);
        let network = self.run_network(ins, run)?;
        let mut env: Vec<String> = self.vars().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.dedup_by(|a, b| a.split('=').next() == b.split('=').next());
        let workdir = self.state.config.workdir().to_string();
        let user = self.state.config.user().map(str::to_string);
        let mut resolved = self.resolve_mounts(ins, &run.mounts, reads)?;
        // The binaries are the image's: a base of another platform than the stage's runs as its own needs.
        let platform = self.state.config.platform().unwrap_or_else(|| self.node.platform.clone());
        let key = cache::run(&cache::RunKey {
            parent: &self.state.cache_key,
            argv: &argv,
            env: &env,
            workdir: &workdir,
            user: user.as_deref().unwrap_or(""),
            mounts: &resolved.key_parts,
            network: &format!("{network:?}"),
            platform: &if platform.is_native() { String::new() } else { platform.to_string() },
            script: script.as_ref().map_or("", |(_, content)| content.as_str()),
        });
        // Proxy build args reach the step without an ARG, and stay out of its cache key.
        for (k, v) in crate::engine::graph::proxy_env(&self.req.build_args) {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        let secrets_dir = self.store.tmp().path("secrets");
        let cleanup = |dirs: &[PathBuf]| {
            for d in dirs.iter().chain([&secrets_dir]) {
                let _ = crate::fsops::remove_path(d);
            }
        };
        if self.reuse_cached(&key, step, &created_by)? {
            cleanup(&resolved.scratch_dirs);
            return Ok(());
        }
        let process = argv.join(" ");
        if let Err(e) = self.ensure_files().and_then(|()| self.place_deferred_binds(ins, &mut resolved)) {
            cleanup(&resolved.scratch_dirs);
            return Err(e);
        }
        let executed = self.with_agent_sources(ins, &resolved.mounts, &secrets_dir).and_then(|mounts| {
            let throwaway = self.session.throwaway_mounts.as_ref().map(|t| t.token.as_str());
            for m in mounts.iter().filter(|m| m.kind == MountType::Cache) {
                if throwaway.is_some_and(|t| m.id.as_deref().is_some_and(|id| id.ends_with(t))) {
                    continue;
                }
                if let Ok(mut used) = self.session.mounts_used.lock() {
                    used.insert(crate::sandbox::mounts::cache_dir_name(m));
                }
            }
            let identity = self.step_identity();
            let request = ExecRequest {
                lowers: self.state.snapshots.clone(),
                argv,
                env,
                cwd: workdir,
                user,
                identity,
                network,
                extra_hosts: self.req.extra_hosts.clone(),
                mounts,
                script,
                ulimits: self.req.ulimits.clone(),
                shm_size: self.req.shm_size,
                insecure: run.security.as_deref() == Some("insecure"),
                hostname: self
                    .req
                    .build_args
                    .get("BUILDKIT_SANDBOX_HOSTNAME")
                    .cloned()
                    .unwrap_or_else(|| "buildkitsandbox".into()),
                platform: platform.clone(),
                layer: self.req.layers,
            };
            self.execute(ins, &request, step)
        });
        cleanup(&resolved.scratch_dirs);
        let executed = executed?;
        if !executed.status.success() {
            return Err(self.run_failed(ins, &process, &executed));
        }
        self.finish_step(&key, executed.layer, created_by, step, start)
    }

    /// `RUN --network` against the build's default and its entitlements; `--security=insecure` needs its own.
    fn run_network(&self, ins: &Instruction, run: &RunInstruction) -> Result<Network> {
        let network = match run.network.as_deref() {
            None | Some("default") => self.req.network,
            Some("none") => Network::None,
            Some("host") if self.req.allow.contains("network.host") => Network::Host,
            Some("host") => {
                return Err(self.fail(
                    ins,
                    "entitlement network.host is not allowed: RUN --network=host needs --allow network.host",
                ));
            }
            Some(other) => return Err(self.fail(ins, &format!("RUN --network={other}: use default, none or host"))),
        };
        if run.security.as_deref() == Some("insecure") && !self.req.allow.contains("security.insecure") {
            return Err(self.fail(
                ins,
                "entitlement security.insecure is not allowed: RUN --security=insecure needs --allow security.insecure",
            ));
        }
        Ok(network)
    }

    /// Run the step through the executor: its output lines go to the progress (the last 20 are kept for an error
    /// message), and what it changed is committed while the executor holds it.
    fn execute(&self, ins: &Instruction, request: &ExecRequest, step: usize) -> Result<Executed> {
        let tail = Mutex::new(VecDeque::<String>::new());
        let progress = self.session.progress;
        let output = |stream: Stream, line: &str| {
            progress.event(&Event::Output { step, stream, line });
            if let Ok(mut tail) = tail.lock() {
                tail.push_back(line.to_string());
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
        };
        let mut layer = None;
        let executor = &self.session.worker.executor;
        let status = executor.run(request, &output, &mut |changes| {
            let origin = if changes.as_snapshot { LayerDir::Sandbox } else { LayerDir::Adjusted };
            layer = match changes.changes {
                Changes::Entries(entries) => self.commit_dir(changes.dir, entries, origin)?,
                Changes::Exported(info) => self.commit_exported(changes.dir, info, origin)?,
            };
            Ok(())
        });
        for note in executor.take_notes() {
            self.session.note(&note);
        }
        let outcome = status.map_err(|e| match e {
            // The sandbox could not start the step (an unknown USER, a bad mount target...): say which.
            Error::Sandbox(e) => self.step_error(ins, StepError::Sandbox(e)),
            // A mount the step cannot have (a cache source leading out of its cache...): say which step.
            e @ Error::BadMount { .. } => self.step_error(ins, StepError::Cause(Box::new(e))),
            e => e,
        })?;
        let tail = tail.into_inner().map(Vec::from).unwrap_or_default();
        // As BuildKit: a RUN that changes nothing still adds a layer, an empty one (testExportedHistory).
        if layer.is_none() && outcome.status.success() {
            layer = Some(self.empty_layer()?);
        }
        Ok(Executed { status: outcome.status, notes: outcome.notes, tail, layer })
    }

    /// The error of a step that ran and failed, in BuildKit's words (`process "/bin/sh -c ..." did not complete
    /// successfully: exit code: N`), then its last output and why it may have failed.
    fn run_failed(&self, ins: &Instruction, process: &str, executed: &Executed) -> Error {
        let exit = StepError::Exit {
            process: process.to_string(),
            code: executed.status.code(),
            tail: executed.tail.clone(),
            notes: executed.notes.clone(),
        };
        self.step_error(ins, exit)
    }

    /// Bind mounts read from the context, a named context, an image or another stage: their sources become host
    /// paths, and their key parts name the content they mount. A cache seeded `from=` a source gets a cache of its
    /// own (per id and seed), filled with the seed's files when first made.
    fn resolve_mounts(&self, ins: &Instruction, mounts: &[RunMount], reads: &[Source]) -> Result<ResolvedMounts> {
        let mut out = ResolvedMounts {
            mounts: Vec::new(),
            key_parts: Vec::new(),
            scratch_dirs: Vec::new(),
            deferred: Vec::new(),
        };
        let mut reads = reads.iter();
        let outcome = (|| -> Result<()> {
            for m in mounts {
                let mut m = self.expand_mount(ins, m)?;
                let from = m.from.as_ref().and_then(|_| reads.next());
                if m.kind == MountType::Bind
                    && let Some(source_image) = from.filter(|f| self.source_is_merged(f))
                {
                    // A stage's or an image's files: the source's key stands for them (it follows their content).
                    let key = self.resolve_source_image(source_image, ins)?.cache_key;
                    let source = clean_path(m.source.as_deref().unwrap_or("."));
                    let target = m.target.clone().unwrap_or_default();
                    out.key_parts.push(cache::bind_mount_part(&source, &key, &target, m.read_only));
                    m.source = Some(source);
                    out.deferred.push((out.mounts.len(), source_image.clone()));
                } else if m.kind == MountType::Bind {
                    let (root, key, tmp) = self.source_root(ins, from)?;
                    let from_files = tmp.is_none();
                    out.scratch_dirs.extend(tmp);
                    let source = clean_path(m.source.as_deref().unwrap_or("."));
                    // The build context as COPY sees it: what .dockerignore excludes is not mounted (BuildKit).
                    let root = if from.is_none() && !self.ignore.is_empty() {
                        let view = self.store.tmp().path("bind");
                        out.scratch_dirs.push(view.clone());
                        self.context_view(ins, &root, &source, &view)?;
                        view
                    } else {
                        root
                    };
                    let real = self.bind_source_path(ins, &root, &source, from)?;
                    // Context files (the build's or a named directory's) are keyed by their content, as COPY's are.
                    let content_key =
                        if from_files { self.mounted_files_checksum(ins, &root, &source, from)? } else { key };
                    let target = m.target.clone().unwrap_or_default();
                    out.key_parts.push(cache::bind_mount_part(&source, &content_key, &target, m.read_only));
                    m.source = Some(real.display().to_string());
                    m.from = None;
                } else {
                    if m.kind == MountType::Cache && m.from.is_some() {
                        let (root, key, tmp) = self.source_root(ins, from)?;
                        out.scratch_dirs.extend(tmp);
                        let source = clean_path(m.source.as_deref().unwrap_or("."));
                        let path = root.join(source.trim_start_matches('/'));
                        if !path.is_dir() {
                            return Err(self.fail(
                                ins,
                                &format!("cache mount source {source:?} is not a directory in {}", describe(from)),
                            ));
                        }
                        let id = m.id.clone().or_else(|| m.target.clone()).unwrap_or_default();
                        m.id = Some(format!("{id} from {key} {source}"));
                        m.seed = Some(path.display().to_string());
                        m.source = None;
                        m.from = None;
                    }
                    out.key_parts.push(cache::mount_part(&m));
                    if m.kind == MountType::Cache
                        && let Some(throwaway) = &self.session.throwaway_mounts
                    {
                        let id = m.id.clone().or_else(|| m.target.clone()).unwrap_or_default();
                        m.id = Some(format!("{id} {}", throwaway.token));
                        if let Ok(mut names) = throwaway.names.lock() {
                            names.insert(crate::sandbox::mounts::cache_dir_name(&m));
                        }
                    }
                }
                out.mounts.push(m);
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            for d in &out.scratch_dirs {
                let _ = crate::fsops::remove_path(d);
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Where a bind mount's `source` is under `root` (the files of `from`): it must exist and stay inside.
    fn bind_source_path(&self, ins: &Instruction, root: &Path, source: &str, from: Option<&Source>) -> Result<PathBuf> {
        let path = root.join(source.trim_start_matches('/'));
        let real = fs::canonicalize(&path).map_err(|_| {
            self.fail(ins, &format!("bind mount source {source:?} does not exist in {}", describe(from)))
        })?;
        let real_root = fs::canonicalize(root).map_err(Error::io("resolve", root))?;
        if !real.starts_with(&real_root) {
            return Err(self.fail(ins, &format!("bind mount source {source:?} leaves its context")));
        }
        Ok(real)
    }

    /// The step runs: the deferred bind mounts get their source's files (merged into a scratch directory).
    fn place_deferred_binds(&self, ins: &Instruction, resolved: &mut ResolvedMounts) -> Result<()> {
        for (i, from) in std::mem::take(&mut resolved.deferred) {
            let (root, _, tmp) = self.source_root(ins, Some(&from))?;
            resolved.scratch_dirs.extend(tmp);
            let m = &mut resolved.mounts[i];
            let source = m.source.clone().unwrap_or_else(|| ".".into());
            m.source = Some(self.bind_source_path(ins, &root, &source, Some(&from))?.display().to_string());
            m.from = None;
        }
        Ok(())
    }

    /// The mount with the variables in its values expanded with the step's (BuildKit's testMountEnvVar, testMountArg).
    fn expand_mount(&self, ins: &Instruction, m: &RunMount) -> Result<RunMount> {
        let mut failed = None;
        let expanded = crate::dockerfile::expand_mount(m, |v| {
            self.expand(ins, v).map_err(|e| {
                failed = Some(e);
                String::new()
            })
        });
        match (expanded, failed) {
            (Ok(m), _) => Ok(m),
            (Err(_), Some(e)) => Err(e),
            (Err(msg), None) => Err(self.fail(ins, &format!("--mount: {msg}"))),
        }
    }

    /// The checksum of the files a bind mount shows from a directory source (all of them: the mount shows the
    /// directory as it is), read through the build's file hash record.
    fn mounted_files_checksum(
        &self,
        ins: &Instruction,
        root: &Path,
        source: &str,
        from: Option<&Source>,
    ) -> Result<String> {
        let ignore = if from.is_none() { self.ignore.clone() } else { IgnoreMatcher::default() };
        // The mount shows the files with their owners: they are part of what it mounts.
        let selection = copy::select(root, &ignore, &[source.to_string()])
            .map_err(|e| self.fail(ins, &format!("bind mount source: {e} in {}", describe(from))))?
            .keeping_owners();
        selection.checksum_with(&self.session.file_hashes)
    }

    /// Copy `source` of the build context, without what .dockerignore excludes, to the same path under `view`.
    fn context_view(&self, ins: &Instruction, context: &Path, source: &str, view: &Path) -> Result<()> {
        fs::create_dir_all(view).map_err(Error::io("create", view))?;
        let selection = copy::select(context, self.ignore, &[source.to_string()])
            .map_err(|e| self.fail(ins, &format!("bind mount source: {e} in the build context")))?;
        let dest = if source == "." { "/".to_string() } else { format!("/{}", source.trim_start_matches('/')) };
        selection.copy_into(view, &dest, None, None, None)?;
        Ok(())
    }

    /// Secret mounts take their values from `--secret` (a file, or an environment variable written to a file
    /// in the step's private directory, removed with it); SSH mounts take their socket from `--ssh`. The cache
    /// key never sees them.
    pub(super) fn with_agent_sources(
        &self,
        ins: &Instruction,
        mounts: &[RunMount],
        dir: &Path,
    ) -> Result<Vec<RunMount>> {
        let mut out = Vec::new();
        for m in mounts {
            let mut m = m.clone();
            if m.kind == MountType::Ssh {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                match self.req.ssh.get(&id) {
                    Some(sock) => m.source = Some(sock.display().to_string()),
                    None if m.required == Some(true) => {
                        return Err(self.fail(ins, &format!("SSH agent {id:?} is required: pass --ssh {id}")));
                    }
                    None => continue,
                }
            }
            if m.kind == MountType::Secret && m.source.is_none() {
                let id =
                    m.id.clone().or_else(|| m.target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_string)));
                let Some(source) = id.as_ref().and_then(|id| self.req.secrets.get(id)) else {
                    if m.required == Some(true) {
                        return Err(self.fail(
                            ins,
                            &format!(
                                "secret {0}: not found (the mount requires it: pass --secret id={0},src=FILE)",
                                id.unwrap_or_default()
                            ),
                        ));
                    }
                    out.push(m);
                    continue;
                };
                let value = match source {
                    crate::engine::SecretSource::File(p) => {
                        m.source = Some(p.display().to_string());
                        out.push(m);
                        continue;
                    }
                    crate::engine::SecretSource::Env(var) => std::env::var(var)
                        .map_err(|_| self.fail(ins, &format!("--secret env={var}: the variable is not set")))?,
                    crate::engine::SecretSource::Value(v) => v.clone(),
                };
                // A value is written to a file of the step's private directory (removed with it).
                fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
                let f = dir.join(format!("env-{}", id.clone().unwrap_or_default().replace('/', "_")));
                fs::write(&f, value).map_err(Error::io("write", &f))?;
                m.source = Some(f.display().to_string());
            }
            out.push(m);
        }
        Ok(out)
    }
}
