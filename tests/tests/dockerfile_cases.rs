//! The Dockerfile conformance suite: every case under `tests/cases/<area>/<name>/` is a build context (its files,
//! minus `case.toml`) and a `case.toml` saying how to build it and what must come out — files with content, mode
//! and owner read from the image's layers, config fields, history, output lines, or the expected error. Every
//! case runs as the unprivileged user with subuid mapping; those marked `root = true` (at least a third) also as
//! root; those changing owners also with one id mapped; and those with RUN steps also in container isolation (each
//! rbuild in a container of a private Docker engine under Docker's default seccomp profile; `not_container` says
//! why a case cannot). `RBUILD_CASES=substring` runs only the matching cases. Reports `N passed, N failed`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rbuild_tests::build_fixture::{Builder, InContainer, counts};
use rbuild_tests::image_files::ImageFiles;
use rbuild_tests::{FileServer, running_as_root, workspace_root};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    /// Extra `rbuild build` flags (paths relative to the context).
    #[serde(default)]
    flags: Vec<String>,
    /// The context argument, relative to the case directory (`{http}` is the `www/` server's URL).
    #[serde(default = "dot")]
    context: String,
    /// Also run as root.
    #[serde(default)]
    root: bool,
    /// A shell script run in the context directory before building (modes, symlinks, empty dirs).
    setup: Option<String>,
    /// Environment for rbuild (secrets from the environment, SOURCE_DATE_EPOCH).
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    expect: Expect,
    /// A second build after the first, to check what the cache does.
    rebuild: Option<Rebuild>,
    /// Why the case cannot pass with one id mapped (it changes owners or users, so it would run that way too):
    /// what it checks is what docs/one-id.md says a step cannot observe.
    not_one_id: Option<String>,
    /// Why the case cannot pass in container isolation (docs/ci.md lists what it cannot do).
    not_container: Option<String>,
}

fn dot() -> String {
    ".".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The build fails and its error output contains each of these.
    #[serde(default)]
    error: Vec<String>,
    /// The build's output (progress and messages) contains each of these.
    #[serde(default)]
    output: Vec<String>,
    /// ... and none of these.
    #[serde(default)]
    not_output: Vec<String>,
    #[serde(default)]
    files: BTreeMap<String, FileExpect>,
    /// Paths the image must not have.
    #[serde(default)]
    absent: Vec<String>,
    /// JSON pointers into the image config (`/config/User`) and the value each must have (`"*"`: any value).
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    /// JSON pointers into the image config that must be absent or null.
    #[serde(default)]
    config_unset: Vec<String>,
    /// The `created_by` of the image's last history entries, in order.
    #[serde(default)]
    history: Vec<String>,
    /// Commands run in the built image and their exact output.
    #[serde(default)]
    run: Vec<RunExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileExpect {
    Content(String),
    Detail(FileDetail),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDetail {
    content: Option<String>,
    contains: Option<String>,
    /// Octal, e.g. "0755".
    mode: Option<String>,
    /// "uid:gid".
    owner: Option<String>,
    /// file, dir, symlink, hardlink.
    kind: Option<String>,
    target: Option<String>,
    mtime: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunExpect {
    cmd: Vec<String>,
    stdout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rebuild {
    /// Run before the second build.
    setup: Option<String>,
    /// Replaces the first build's flags when given.
    flags: Option<Vec<String>>,
    /// How many steps the second build runs (the rest come from the cache).
    #[serde(default)]
    steps_run: usize,
    /// The second build fails, its output containing each of these (the cache must not hide the change).
    #[serde(default)]
    error: Vec<String>,
    #[serde(default)]
    run: Vec<RunExpect>,
}

fn cases_dir() -> PathBuf {
    workspace_root().join("tests/cases")
}

/// Every case, as (area/name, directory, case.toml), sorted.
fn all_cases() -> Vec<(String, PathBuf, Case)> {
    let mut out = Vec::new();
    let mut areas: Vec<_> = std::fs::read_dir(cases_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    areas.sort();
    for area in areas.into_iter().filter(|p| p.is_dir()) {
        let mut cases: Vec<_> = std::fs::read_dir(&area).unwrap().map(|e| e.unwrap().path()).collect();
        cases.sort();
        for case in cases.into_iter().filter(|p| p.join("case.toml").is_file()) {
            let id = format!(
                "{}/{}",
                area.file_name().unwrap().to_string_lossy(),
                case.file_name().unwrap().to_string_lossy()
            );
            let spec = toml::from_str(&std::fs::read_to_string(case.join("case.toml")).unwrap())
                .unwrap_or_else(|e| panic!("{id}/case.toml: {e}"));
            out.push((id, case, spec));
        }
    }
    out
}

/// Copy the case's files (not case.toml) into `to`, with modes normalised so a checkout's umask does not matter.
fn copy_case(from: &Path, to: &Path, top: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if top && name == "case.toml" {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let meta = std::fs::symlink_metadata(&src).unwrap();
        use std::os::unix::fs::PermissionsExt;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_case(&src, &dst, false);
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
            let mode = if meta.permissions().mode() & 0o100 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run one case with one builder; Err says what differed.
fn run_case(builder: &Builder, id: &str, dir: &Path, case: &Case) -> Result<(), String> {
    let work = builder.work.join(format!("{}-{}", id.replace('/', "-"), builder.who()));
    let ctx = work.join("ctx");
    copy_case(dir, &ctx, true);
    if builder.as_user {
        rbuild_tests::give_to_test_user(&work);
    }
    let setup = |script: &Option<String>| -> Result<(), String> {
        if let Some(script) = script {
            let out = builder.shell(&ctx, script);
            if !out.status.success() {
                return Err(format!("setup failed: {}{}", text(&out.stdout), text(&out.stderr)));
            }
        }
        Ok(())
    };
    setup(&case.setup)?;
    // A case with a `www/` directory gets it served on loopback; `{http}` in its flags is the server's URL.
    let server = ctx.join("www").is_dir().then(|| FileServer::start(&ctx.join("www")));
    let url = server.as_ref().map(|s| format!("http://127.0.0.1:{}", s.port)).unwrap_or_default();
    let with_url = |flags: &[String]| flags.iter().map(|f| f.replace("{http}", &url)).collect::<Vec<_>>();
    let context = case.context.replace("{http}", &url);
    let tag = format!("case-{}", id.replace('/', "-"));
    let layout = work.join("layout");
    let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let build = |flags: &[String]| {
        let dest = format!("type=oci,tar=false,dest={}", layout.display());
        let mut args = vec!["build", "-t", &tag, "--progress", "plain", "-o", &dest];
        args.extend(flags.iter().map(String::as_str));
        args.push(&context);
        let _ = std::fs::remove_dir_all(&layout);
        let out = builder.rb_in(Some(&ctx), &args, &env);
        (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };
    let (ok, output) = build(&with_url(&case.flags));
    let fail = |what: String| Err(format!("{what} [{}]\n--- build output ---\n{output}", case.description));
    let e = &case.expect;
    if !e.error.is_empty() {
        if ok {
            return fail("the build succeeded; expected it to fail".into());
        }
        if let Some(missing) = e.error.iter().find(|s| !output.contains(s.as_str())) {
            return fail(format!("the error does not say {missing:?}"));
        }
        return Ok(());
    }
    if !ok {
        return fail("the build failed".into());
    }
    if let Some(missing) = e.output.iter().find(|s| !output.contains(s.as_str())) {
        return fail(format!("the output does not say {missing:?}"));
    }
    if let Some(said) = e.not_output.iter().find(|s| output.contains(s.as_str())) {
        return fail(format!("the output says {said:?}"));
    }
    let image = ImageFiles::from_layout(&layout).map_err(|err| format!("cannot read the image: {err}"))?;
    for (path, want) in &e.files {
        let Some(got) = image.files.get(path) else {
            return fail(format!("{path}: not in the image"));
        };
        let detail = match want {
            FileExpect::Content(c) => &FileDetail { content: Some(c.clone()), ..Default::default() },
            FileExpect::Detail(d) => d,
        };
        let content = text(&got.content);
        if let Some(c) = &detail.content
            && &content != c
        {
            return fail(format!("{path}: content {content:?}, expected {c:?}"));
        }
        if let Some(c) = &detail.contains
            && !content.contains(c.as_str())
        {
            return fail(format!("{path}: content {content:?} does not contain {c:?}"));
        }
        if let Some(m) = &detail.mode
            && u32::from_str_radix(m, 8).ok() != Some(got.mode)
        {
            return fail(format!("{path}: mode {:04o}, expected {m}", got.mode));
        }
        if let Some(o) = &detail.owner
            && *o != format!("{}:{}", got.uid, got.gid)
        {
            return fail(format!("{path}: owner {}:{}, expected {o}", got.uid, got.gid));
        }
        if let Some(k) = &detail.kind
            && k != got.kind
        {
            return fail(format!("{path}: a {}, expected a {k}", got.kind));
        }
        if let Some(t) = &detail.target
            && *t != got.target
        {
            return fail(format!("{path}: links to {:?}, expected {t:?}", got.target));
        }
        if let Some(t) = detail.mtime
            && t != got.mtime
        {
            return fail(format!("{path}: mtime {}, expected {t}", got.mtime));
        }
    }
    if let Some(p) = e.absent.iter().find(|p| image.files.contains_key(p.as_str())) {
        return fail(format!("{p}: in the image, expected absent"));
    }
    for (pointer, want) in &e.config {
        let want = serde_json::to_value(want).unwrap();
        let got = image.config.pointer(pointer).cloned().unwrap_or(serde_json::Value::Null);
        // "*" stands for any value that is there.
        let matches = if want == "*" { !got.is_null() } else { got == want };
        if !matches {
            return fail(format!("config {pointer}: {got}, expected {want}"));
        }
    }
    if let Some(p) = e.config_unset.iter().find(|p| image.config.pointer(p).is_some_and(|v| !v.is_null())) {
        return fail(format!("config {p}: {}, expected none", image.config.pointer(p).unwrap_or_default()));
    }
    if !e.history.is_empty() {
        let all: Vec<String> = image.config["history"]
            .as_array()
            .map(|h| h.iter().map(|e| e["created_by"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default();
        let tail = &all[all.len().saturating_sub(e.history.len())..];
        if tail != e.history.as_slice() {
            return fail(format!("history ends {tail:#?}, expected {:#?}", e.history));
        }
    }
    check_runs(builder, &tag, &e.run).or_else(fail)?;
    if let Some(rb) = &case.rebuild {
        setup(&rb.setup)?;
        let (ok, output) = build(&with_url(rb.flags.as_ref().unwrap_or(&case.flags)));
        if !rb.error.is_empty() {
            if ok {
                return Err(format!("the rebuild succeeded; expected it to fail:\n{output}"));
            }
            if let Some(missing) = rb.error.iter().find(|s| !output.contains(s.as_str())) {
                return Err(format!("the rebuild's error does not say {missing:?}:\n{output}"));
            }
            return Ok(());
        }
        if !ok {
            return Err(format!("the rebuild failed:\n{output}"));
        }
        let (run, _) = counts(&output);
        if run != rb.steps_run {
            return Err(format!("the rebuild ran {run} steps, expected {}:\n{output}", rb.steps_run));
        }
        check_runs(builder, &tag, &rb.run)?;
    }
    Ok(())
}

fn check_runs(builder: &Builder, tag: &str, runs: &[RunExpect]) -> Result<(), String> {
    for r in runs {
        let mut args = vec!["run", tag];
        args.extend(r.cmd.iter().map(String::as_str));
        let out = builder.rb(&args);
        let stdout = text(&out.stdout);
        if !out.status.success() || stdout != r.stdout {
            return Err(format!(
                "run {:?}: {stdout:?} (stderr {:?}), expected {:?}",
                r.cmd,
                text(&out.stderr),
                r.stdout
            ));
        }
    }
    Ok(())
}

/// The BuildKit tests a description cites (`testCopySymlinks` -> `CopySymlinks`).
fn cited_buildkit_tests(description: &str) -> Vec<String> {
    description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| w.strip_prefix("test").or_else(|| w.strip_prefix("Test")))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(str::to_string)
        .collect()
}

/// A builder running rbuild in containers of a private Docker engine, in container isolation.
fn container_builder() -> Result<Builder, String> {
    let (engine, bin) = rbuild_tests::docker_jobs::engine_and_static_rbuild()?;
    Ok(Builder::in_container(InContainer { engine: std::sync::Arc::new(engine), bin }))
}

/// Whether a case's Dockerfiles have RUN steps (the only ones container isolation runs differently).
fn has_run_steps(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        e.file_name().to_string_lossy().contains("Dockerfile")
            && std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.lines().any(|l| {
                    let l = l.trim_start().to_ascii_uppercase();
                    l.starts_with("RUN ") || l.starts_with("RUN\t") || l.starts_with("ONBUILD RUN")
                })
            })
    })
}

/// Whether a case's Dockerfiles change owners or switch users (`chown`, `--chown`, `USER`).
fn changes_owners(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.contains("Dockerfile")
            && std::fs::read_to_string(e.path()).is_ok_and(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("chown") || t.lines().any(|l| l.trim_start().starts_with("user "))
            })
    })
}

#[test]
fn dockerfile_cases() {
    let filter = std::env::var("RBUILD_CASES").unwrap_or_default();
    let cases = all_cases();
    let total = cases.len();
    let as_root = cases.iter().filter(|(_, _, c)| c.root).count();
    if filter.is_empty() {
        let doc = std::fs::read_to_string(workspace_root().join("docs/dockerfile-support.md")).unwrap();
        let unlisted: Vec<&String> =
            cases.iter().map(|(id, _, _)| id).filter(|id| !doc.contains(&format!("`{id}`"))).collect();
        assert!(unlisted.is_empty(), "docs/dockerfile-support.md does not list these cases: {unlisted:?}");
        // A case citing a BuildKit test names one docs/buildkit-tests.toml lists (the port's ledger).
        let ledger = std::fs::read_to_string(workspace_root().join("docs/buildkit-tests.toml")).unwrap();
        let unknown: Vec<String> = cases
            .iter()
            .flat_map(|(id, _, c)| cited_buildkit_tests(&c.description).into_iter().map(move |t| format!("{id}: {t}")))
            .filter(|cite| {
                let name = cite.rsplit(' ').next().unwrap_or_default();
                !ledger.contains(&format!("\n{name} = ")) && !ledger.contains(&format!("\nTest{name} = "))
            })
            .collect();
        assert!(unknown.is_empty(), "cases cite BuildKit tests docs/buildkit-tests.toml does not list: {unknown:?}");
        assert!(total >= 100, "the suite has {total} cases; it needs at least 100");
        assert!(as_root * 3 >= total, "{as_root} of {total} cases run as root; at least a third must");
    }
    let root = running_as_root();
    // The unprivileged user (subuid mapping) when running as root; else the current user.
    let mut builders = vec![Builder::new(root)];
    if root {
        builders.push(Builder::new(false));
        // Cases that change owners or run as a USER also run with one id mapped (no subordinate ids).
        builders.push(Builder::one_id());
        // Cases with RUN steps also run in container isolation, in containers of a private Docker engine.
        match container_builder() {
            Ok(b) => builders.push(b),
            Err(why) => eprintln!("the container-isolation runs are skipped: {why}"),
        }
    }
    let mut jobs = Vec::new();
    for (id, dir, case) in cases.iter().filter(|(id, _, _)| id.contains(&filter)) {
        jobs.push((id, dir, case, 0));
        if root && case.root {
            jobs.push((id, dir, case, 1));
        }
        if root && case.not_one_id.is_none() && changes_owners(dir) {
            jobs.push((id, dir, case, 2));
        }
        if builders.len() > 3 && case.not_container.is_none() && has_run_steps(dir) {
            jobs.push((id, dir, case, 3));
        }
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(id, dir, case, b)) = jobs.get(i) else { break };
                    let builder = &builders[b];
                    let who = builder.who();
                    let r = run_case(builder, id, dir, case);
                    results.lock().unwrap().push((format!("{id} ({who})"), r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (name, r) in &failed {
        eprintln!("FAILED {name}: {}\n", r.as_ref().unwrap_err());
    }
    let passed = results.len() - failed.len();
    eprintln!(
        "dockerfile cases: {passed} passed, {} failed ({} runs of {} cases; {as_root} marked to run as root too)",
        failed.len(),
        results.len(),
        jobs.iter().map(|j| &j.0).collect::<std::collections::BTreeSet<_>>().len()
    );
    for b in &builders {
        b.assert_clean();
    }
    assert!(
        failed.is_empty(),
        "{} of {} case runs failed: {:?}",
        failed.len(),
        results.len(),
        failed.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
}
