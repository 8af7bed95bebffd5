//! `rbuild build --check` and `--call`: the Dockerfile frontend, its build checks and the `.dockerignore` parser
//! run over a build's inputs without building anything; and the build checks a real build reports first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use rbuild_builder::dockerfile;
use rbuild_builder::engine::BuildRequest;
use rbuild_builder::engine::request_flags::{key_values, parse_build_args};

use super::build_args::{BuildArgs, target_platforms};
use super::dockerfile_input;

/// A `--call` value: the method and whether it prints JSON.
pub fn parse_call(call: &str) -> anyhow::Result<(String, bool)> {
    let mut parts = call.split(',');
    let method = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut json = false;
    for p in parts {
        match p.trim() {
            "format=json" => json = true,
            "format=text" | "" => {}
            other => bail!("--call {call:?}: unknown option {other:?} (format=json|text)"),
        }
    }
    if !["build", "check", "outline", "targets", "subrequests.describe"].contains(&method.as_str()) {
        bail!("--call {call:?}: unknown method {method:?} (build, check, outline, targets, subrequests.describe)");
    }
    Ok((method, json))
}

/// The request `--check` and `--call` look at: the Dockerfile `-f` names (default: the context's), in the context
/// directory.
fn request(args: &BuildArgs) -> anyhow::Result<BuildRequest> {
    let context = PathBuf::from(&args.context);
    let file = args.file.clone().unwrap_or_else(|| rbuild_builder::context::default_dockerfile(&context));
    let input = dockerfile_input::read(&file)?;
    let mut req = BuildRequest::new(context, input.name, input.text);
    req.dockerfile_path = input.path;
    Ok(req)
}

/// `rbuild build --call outline|targets|subrequests.describe`: answered from the Dockerfile alone.
pub fn call(args: BuildArgs, method: &str, json: bool) -> anyhow::Result<ExitCode> {
    use rbuild_builder::engine::subrequests;
    let print = |v: serde_json::Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    };
    if method == "subrequests.describe" {
        print(subrequests::describe())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut req = request(&args)?;
    if method == "targets" {
        let targets = subrequests::targets(&*req.dockerfile()?, &req.dockerfile_text);
        if json {
            print(subrequests::targets_json(&targets, &req.dockerfile_text))?;
        } else {
            print!("{}", subrequests::targets_text(&targets));
        }
        return Ok(ExitCode::SUCCESS);
    }
    req.build_args = parse_build_args(&args.build_args);
    req.target = args.target.clone();
    req.platform = target_platforms(args.platform.as_deref())?.remove(0);
    for (name, value) in key_values(&args.build_contexts, "--build-context")? {
        req.named_contexts.insert(name, rbuild_builder::engine::NamedContext::parse(&value));
    }
    let outline = subrequests::outline(&req)?;
    if json {
        print(outline.to_json())?;
    } else {
        print!("{}", outline.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `rbuild build --check`: parse and lint the Dockerfile and check the ignore file, without building.
pub fn check(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut req = request(&args)?;
    req.build_args = parse_build_args(&args.build_args);
    let (context, input) = (req.context.clone(), &req.dockerfile_name);
    let parsed = req.dockerfile()?;
    for w in &parsed.warnings {
        eprintln!("warning: {}:{}: {}", input, w.line, w.message);
    }
    report_build_checks(&req, false)?;
    if let Some(target) = &args.target {
        let lower = target.to_ascii_lowercase();
        if !parsed.stages.iter().any(|s| s.name.as_deref() == Some(lower.as_str())) {
            let names: Vec<&str> = parsed.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            bail!(
                "target stage {target:?} could not be found in {} (stages: {})",
                input,
                if names.is_empty() { "none are named".to_string() } else { names.join(", ") }
            );
        }
    }
    let ignore = check_ignore_file(&context, req.dockerfile_path.as_deref())?;
    let instructions: usize = parsed.stages.iter().map(|s| s.instructions.len() + 1).sum();
    println!(
        "{}: OK ({} stage{}, {} instructions{})",
        input,
        parsed.stages.len(),
        if parsed.stages.len() == 1 { "" } else { "s" },
        instructions + parsed.meta_args.len(),
        ignore
            .map(|(p, n)| format!("; {} with {n} pattern{}", p.display(), if n == 1 { "" } else { "s" }))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Run the build checks (`# check=` decides which, and whether they fail the build) and print what they find.
pub fn report_build_checks(req: &BuildRequest, quiet: bool) -> anyhow::Result<()> {
    let Ok(parsed) = req.dockerfile() else {
        // The build itself reports parse errors, with their line.
        return Ok(());
    };
    let (name, text) = (&req.dockerfile_name, &req.dockerfile_text);
    let check = dockerfile::lint::build_check(&parsed, &req.build_args);
    let mut warnings = dockerfile::lint::lint_with(&parsed, text, &check);
    if let Some(ignore) = context_ignore(&req.context, req.dockerfile_path.as_deref()).as_ref() {
        warnings.extend(dockerfile::lint::copy_ignored_files(&parsed, ignore, &check));
        warnings.sort_by_key(|w| w.line);
    }
    if !quiet {
        for line in dockerfile::lint::render(&warnings, name) {
            eprintln!("{line}");
        }
    }
    if check.error && !warnings.is_empty() {
        let rules: std::collections::BTreeSet<&str> = warnings.iter().map(|w| w.rule).collect();
        bail!(
            "{name}: lint violation found for rules: {} (# check=error=true makes build checks fail the build)",
            rules.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The context's ignore rules for the build checks (none when the context has no readable ignore file; the build
/// itself reports a broken one).
fn context_ignore(context: &Path, dockerfile: Option<&Path>) -> Option<rbuild_builder::context::IgnoreMatcher> {
    let dockerfile = dockerfile.map(Path::to_path_buf).unwrap_or_else(|| context.join("Dockerfile"));
    rbuild_builder::context::load_ignore(context, &dockerfile).ok().map(|(m, _)| m)
}

/// Parse the build's ignore file, if any; returns its path and pattern count.
fn check_ignore_file(context: &Path, dockerfile: Option<&Path>) -> anyhow::Result<Option<(PathBuf, usize)>> {
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let dockerfile =
        dockerfile.map(Path::to_path_buf).unwrap_or_else(|| rbuild_builder::context::default_dockerfile(context));
    let (matcher, path) = rbuild_builder::context::load_ignore(context, &dockerfile)?;
    Ok(path.map(|p| (p, matcher.patterns().len())))
}
