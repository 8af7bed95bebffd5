//! A Compose project: which files (`-f`, `COMPOSE_FILE`, or `compose.yaml` & co. found from the working
//! directory up, with their `.override` file), the project directory and name, the variables (process environment
//! over `--env-file`s or the project's `.env`), each file parsed, interpolated, its `include`s and `extends`
//! resolved and its relative paths made absolute, the files merged, and the result validated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::interpolate::interpolate;
use super::model::{self, ComposeModel};
use super::{dotenv, merge, yaml};

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not valid YAML (the message has the line and column).
    #[error("{}: {message}", file.display())]
    Yaml { file: PathBuf, message: String },
    /// A problem at a path of a document.
    #[error("{}: {path}: {message}", file.display())]
    Invalid { file: PathBuf, path: String, message: String },
    /// A problem with the project as a whole.
    #[error("{0}")]
    Project(String),
    /// A service's build failed, or could not be planned (`what` says which part, when it is not the build).
    #[error("service {service}{}", if what.is_empty() { String::new() } else { format!(": {what}") })]
    Service {
        service: String,
        what: String,
        #[source]
        source: Box<crate::error::Error>,
    },
}

/// How to find and read a project (the `rbuild compose` global flags and the environment).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files (empty: `COMPOSE_FILE`, else discovery from `cwd`).
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_directory: Option<PathBuf>,
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    /// The process environment.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub directory: PathBuf,
    pub files: Vec<PathBuf>,
    /// The variables interpolation used (environment over env files).
    pub vars: BTreeMap<String, String>,
    pub model: ComposeModel,
    /// The merged, interpolated, normalised document (for `compose config`).
    pub document: Value,
    /// Active profiles.
    pub profiles: BTreeSet<String>,
    /// Things worth saying (obsolete `version`, non-portable absolute paths).
    pub warnings: Vec<String>,
}

const DISCOVERED: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

/// The override file that goes with a discovered file (`compose.override.yaml` for `compose.yaml`).
fn override_of(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?.to_str()?;
    let (stem, ext) = name.rsplit_once('.')?;
    let candidate = file.with_file_name(format!("{stem}.override.{ext}"));
    candidate.is_file().then_some(candidate)
}

fn read(path: &Path) -> Result<String, ComposeError> {
    std::fs::read_to_string(path).map_err(|source| ComposeError::Read { path: path.to_path_buf(), source })
}

fn absolute(base: &Path, p: &str) -> PathBuf {
    let expanded = if let Some(rest) = p.strip_prefix("~/") {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest)
    } else {
        PathBuf::from(p)
    };
    let joined = if expanded.is_absolute() { expanded } else { base.join(expanded) };
    // Lexically normalised: `a/../b` is `b` (the directory need not exist yet).
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether a build context or additional context value is a directory path (not a URL or a typed reference).
pub fn is_local_path(v: &str) -> bool {
    !(v.contains("://") || v.starts_with("service:") || crate::context::git::is_git_url(v))
}

/// Compose's project name rules: lower case, `[a-z0-9_-]`, starting with a letter or digit.
pub fn normalise_name(raw: &str) -> Option<String> {
    let name: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    name.chars().next().filter(|c| c.is_ascii_alphanumeric()).map(|_| name)
}

/// Interpolate every string value of `v` (not keys), naming the path on error.
fn interpolate_tree(
    v: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match v {
        Value::String(s) => {
            *s = interpolate(s, lookup).map_err(|e| (path.to_string(), e))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                interpolate_tree(item, &p, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One file read, interpolated and normalised, with its `extends` and `include`s resolved and relative paths made
/// absolute against `base_dir`.
struct Loader<'a> {
    vars: &'a BTreeMap<String, String>,
    warnings: Vec<String>,
    /// Files being loaded (include/extends loops).
    stack: Vec<PathBuf>,
}

impl Loader<'_> {
    fn load_file(&mut self, file: &Path, base_dir: &Path) -> Result<Value, ComposeError> {
        let file = absolute(Path::new("/"), &file.to_string_lossy());
        if self.stack.contains(&file) {
            return Err(ComposeError::Project(format!("{}: includes or extends itself", file.display())));
        }
        self.stack.push(file.clone());
        let result = self.load_file_inner(&file, base_dir);
        self.stack.pop();
        result
    }

    fn load_file_inner(&mut self, file: &Path, base_dir: &Path) -> Result<Value, ComposeError> {
        let text = read(file)?;
        let mut doc = yaml::parse(&text).map_err(|message| ComposeError::Yaml { file: file.to_path_buf(), message })?;
        if !doc.is_object() {
            return Err(ComposeError::Invalid {
                file: file.into(),
                path: "(top level)".into(),
                message: "expected a mapping".into(),
            });
        }
        let vars = self.vars;
        interpolate_tree(&mut doc, "", &|n| vars.get(n).cloned()).map_err(|(path, message)| ComposeError::Invalid {
            file: file.into(),
            path,
            message,
        })?;
        model::strip_extensions(&mut doc);
        merge::normalise(&mut doc);
        self.resolve_paths(&mut doc, file, base_dir);
        self.resolve_extends(&mut doc, file, base_dir)?;
        self.resolve_includes(&mut doc, file, base_dir)?;
        Ok(doc)
    }

    /// Relative build contexts, additional contexts and secret files become absolute; absolute ones warn.
    fn resolve_paths(&mut self, doc: &mut Value, file: &Path, base_dir: &Path) {
        let mut warn = |what: String| {
            self.warnings.push(format!("{}: {what} is an absolute path: the file is not portable", file.display()))
        };
        if let Some(services) = doc.get_mut("services").and_then(Value::as_object_mut) {
            for (name, svc) in services.iter_mut() {
                let Some(build) = svc.get_mut("build").and_then(Value::as_object_mut) else { continue };
                // A missing context stays missing until the files are merged (an override file's build section
                // must not reset the context to its default); then it is the project directory.
                let context = match build.get("context") {
                    Some(Value::String(c)) => c.clone(),
                    // Absent, or not a string (validation reports that).
                    _ => continue,
                };
                if is_local_path(&context) {
                    if Path::new(&context).is_absolute() || context.starts_with("~/") {
                        warn(format!("services.{name}.build.context {context:?}"));
                    }
                    build.insert("context".into(), Value::String(absolute(base_dir, &context).display().to_string()));
                }
                if let Some(df) = build.get("dockerfile").and_then(Value::as_str)
                    && Path::new(df).is_absolute()
                {
                    warn(format!("services.{name}.build.dockerfile {df:?}"));
                }
                if let Some(Value::Object(extra)) = build.get_mut("additional_contexts") {
                    for v in extra.values_mut() {
                        if let Some(s) = v.as_str().filter(|s| is_local_path(s)) {
                            *v = Value::String(absolute(base_dir, s).display().to_string());
                        }
                    }
                }
            }
        }
        if let Some(secrets) = doc.get_mut("secrets").and_then(Value::as_object_mut) {
            for def in secrets.values_mut() {
                if let Some(f) = def.get("file").and_then(Value::as_str) {
                    let abs = absolute(base_dir, f).display().to_string();
                    def["file"] = Value::String(abs);
                }
            }
        }
    }

    /// `extends: NAME` or `{service, file}`: the base service (from this file or another, whose relative paths
    /// are its own) merged under the extending one.
    fn resolve_extends(&mut self, doc: &mut Value, file: &Path, base_dir: &Path) -> Result<(), ComposeError> {
        let names: Vec<String> = doc
            .get("services")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter(|(_, s)| s.get("extends").is_some()).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        for name in names {
            self.extend_one(doc, &name, file, base_dir, &mut Vec::new())?;
        }
        Ok(())
    }

    fn extend_one(
        &mut self,
        doc: &mut Value,
        name: &str,
        file: &Path,
        base_dir: &Path,
        chain: &mut Vec<String>,
    ) -> Result<(), ComposeError> {
        let path = format!("services.{name}.extends");
        let invalid = |message: String| ComposeError::Invalid { file: file.into(), path: path.clone(), message };
        let Some(extends) = doc["services"][name].as_object_mut().and_then(|s| s.remove("extends")) else {
            return Ok(());
        };
        if chain.contains(&name.to_string()) {
            return Err(invalid(format!("circular extends: {} -> {name}", chain.join(" -> "))));
        }
        let (base_name, other_file) = match &extends {
            Value::String(s) => (s.clone(), None),
            Value::Object(m) => (
                m.get("service").and_then(Value::as_str).ok_or_else(|| invalid("needs service:".into()))?.to_string(),
                m.get("file").and_then(Value::as_str).map(str::to_string),
            ),
            _ => return Err(invalid("expected a service name or {service, file}".into())),
        };
        let base = match other_file {
            Some(f) => {
                let path = absolute(base_dir, &f);
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let other = self.load_file(&path, &dir)?;
                other["services"]
                    .get(&base_name)
                    .cloned()
                    .ok_or_else(|| invalid(format!("{} has no service {base_name:?}", path.display())))?
            }
            None => {
                chain.push(name.to_string());
                self.extend_one(doc, &base_name, file, base_dir, chain)?;
                chain.pop();
                doc["services"]
                    .get(&base_name)
                    .cloned()
                    .ok_or_else(|| invalid(format!("no service {base_name:?} to extend")))?
            }
        };
        let mut merged = base;
        if let Some(m) = merged.as_object_mut() {
            // What makes a service run alongside others is not inherited.
            for k in ["depends_on", "links", "volumes_from"] {
                m.remove(k);
            }
        }
        let own = doc["services"][name].take();
        merge::merge(&mut merged, own);
        doc["services"][name] = merged;
        Ok(())
    }

    /// `include:` entries load other projects' files (their paths relative to their own directory) whose
    /// services join this one; a service defined twice is an error.
    fn resolve_includes(&mut self, doc: &mut Value, file: &Path, base_dir: &Path) -> Result<(), ComposeError> {
        let Some(includes) = doc.as_object_mut().and_then(|m| m.remove("include")) else { return Ok(()) };
        let entries = match includes {
            Value::Array(a) => a,
            other => vec![other],
        };
        for (i, entry) in entries.into_iter().enumerate() {
            let path = format!("include[{i}]");
            let invalid = |message: &str| ComposeError::Invalid {
                file: file.into(),
                path: path.clone(),
                message: message.into(),
            };
            let (paths, dir) = match &entry {
                Value::String(p) => (vec![p.clone()], None),
                Value::Object(m) => {
                    let paths = match m.get("path") {
                        Some(Value::String(p)) => vec![p.clone()],
                        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                        _ => return Err(invalid("needs path:")),
                    };
                    (paths, m.get("project_directory").and_then(Value::as_str).map(str::to_string))
                }
                _ => return Err(invalid("expected a path or {path, project_directory, env_file}")),
            };
            let mut included = Value::Object(Map::new());
            for p in &paths {
                let abs = absolute(base_dir, p);
                let own_dir = match &dir {
                    Some(d) => absolute(base_dir, d),
                    None => abs.parent().map(Path::to_path_buf).unwrap_or_default(),
                };
                let loaded = self.load_file(&abs, &own_dir)?;
                merge::merge(&mut included, loaded);
            }
            let theirs = included.get("services").and_then(Value::as_object).cloned().unwrap_or_default();
            let ours = doc.as_object_mut().map(|m| m.entry("services").or_insert_with(|| Value::Object(Map::new())));
            if let Some(Value::Object(ours)) = ours {
                for (name, svc) in theirs {
                    if ours.contains_key(&name) {
                        return Err(invalid(&format!(
                            "service {name:?} is defined both here and in the included {}",
                            paths.join(", ")
                        )));
                    }
                    ours.insert(name, svc);
                }
            }
            for section in ["secrets", "networks", "volumes", "configs"] {
                if let Some(Value::Object(defs)) = included.get(section) {
                    let target =
                        doc.as_object_mut().map(|m| m.entry(section).or_insert_with(|| Value::Object(Map::new())));
                    if let Some(Value::Object(target)) = target {
                        for (k, v) in defs {
                            target.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Project {
    pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
        let files = Self::find_files(opts)?;
        let directory = match &opts.project_directory {
            Some(d) => absolute(&opts.cwd, &d.to_string_lossy()),
            None => files[0].parent().map(Path::to_path_buf).unwrap_or_else(|| opts.cwd.clone()),
        };
        // Variables: env files (in order) under the process environment.
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
            let default = directory.join(".env");
            if default.is_file() { vec![default] } else { Vec::new() }
        } else {
            opts.env_files.iter().map(|f| absolute(&opts.cwd, &f.to_string_lossy())).collect()
        };
        for f in &env_files {
            let text = read(f)?;
            let parsed = dotenv::parse(&text, &|n| vars.get(n).cloned().or_else(|| opts.env.get(n).cloned()))
                .map_err(|m| ComposeError::Project(format!("{}: {m}", f.display())))?;
            vars.extend(parsed);
        }
        vars.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut loader = Loader { vars: &vars, warnings: Vec::new(), stack: Vec::new() };
        let mut document = Value::Object(Map::new());
        for f in &files {
            let doc = loader.load_file(f, &directory)?;
            if doc.get("version").is_some() {
                loader.warnings.push(format!("{}: the attribute `version` is obsolete and ignored", f.display()));
            }
            merge::merge(&mut document, doc);
        }
        let mut warnings = loader.warnings;
        if let Some(m) = document.as_object_mut() {
            m.remove("version");
        }
        // Build sections as Compose prints them: the default Dockerfile named.
        if let Some(services) = document.get_mut("services").and_then(Value::as_object_mut) {
            for build in services.values_mut().filter_map(|s| s.get_mut("build")).filter_map(Value::as_object_mut) {
                if !build.contains_key("context") {
                    build.insert("context".into(), Value::String(directory.display().to_string()));
                }
                if !build.contains_key("dockerfile") && !build.contains_key("dockerfile_inline") {
                    build.insert("dockerfile".into(), Value::String("Dockerfile".into()));
                }
            }
        }
        let model = model::validate(&document).map_err(|e| ComposeError::Invalid {
            file: files.last().cloned().unwrap_or_default(),
            path: e.path,
            message: e.message,
        })?;
        let raw_name = opts
            .project_name
            .clone()
            .or_else(|| vars.get("COMPOSE_PROJECT_NAME").cloned().filter(|n| !n.is_empty()))
            .or_else(|| model.name.clone())
            .unwrap_or_else(|| directory.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let name = normalise_name(&raw_name).ok_or_else(|| {
            ComposeError::Project(format!(
                "project name {raw_name:?} is not valid: it must contain only lower-case letters, digits, - and _, and \
                 start with a letter or digit (set it with -p or name:)"
            ))
        })?;
        if let Some(m) = document.as_object_mut() {
            m.insert("name".into(), Value::String(name.clone()));
        }
        let mut profiles: BTreeSet<String> = opts.profiles.iter().cloned().collect();
        if let Some(p) = vars.get("COMPOSE_PROFILES") {
            profiles.extend(p.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string));
        }
        warnings.dedup();
        Ok(Project { name, directory, files, vars, model, document, profiles, warnings })
    }

    fn find_files(opts: &LoadOptions) -> Result<Vec<PathBuf>, ComposeError> {
        if !opts.files.is_empty() {
            return Ok(opts.files.iter().map(|f| absolute(&opts.cwd, &f.to_string_lossy())).collect());
        }
        if let Some(list) = opts.env.get("COMPOSE_FILE").filter(|l| !l.is_empty()) {
            let sep = opts.env.get("COMPOSE_PATH_SEPARATOR").cloned().unwrap_or_else(|| ":".into());
            return Ok(list.split(sep.as_str()).map(|f| absolute(&opts.cwd, f)).collect());
        }
        let mut dir = Some(opts.cwd.as_path());
        while let Some(d) = dir {
            if let Some(found) = DISCOVERED.iter().map(|n| d.join(n)).find(|p| p.is_file()) {
                let mut files = vec![found.clone()];
                files.extend(override_of(&found));
                return Ok(files);
            }
            dir = d.parent();
        }
        Err(ComposeError::Project(format!(
            "no Compose file found in {} or its parents (compose.yaml, compose.yml, docker-compose.yaml, \
             docker-compose.yml); name one with -f",
            opts.cwd.display()
        )))
    }

    /// The services enabled by the active profiles (a service without profiles always is), sorted.
    pub fn enabled_services(&self) -> Vec<String> {
        self.model
            .services
            .iter()
            .filter(|(_, s)| s.profiles.is_empty() || s.profiles.iter().any(|p| self.profiles.contains(p) || p == "*"))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The image name a service's build gets: its `image:`, else `<project>-<service>`.
    pub fn image_name(&self, service: &str) -> String {
        self.model
            .services
            .get(service)
            .and_then(|s| s.image.clone())
            .unwrap_or_else(|| format!("{}-{service}", self.name))
    }

    /// `compose config`: the resolved document as YAML, which read back as a compose file gives the same project (as
    /// `docker compose config`'s): a literal `$` is written `$$` again, and a build arg without a value shows the
    /// value it takes from the environment.
    pub fn config_yaml(&self) -> Result<String, ComposeError> {
        let mut doc = self.document.clone();
        if let Some(services) = doc.get_mut("services").and_then(Value::as_object_mut) {
            for service in services.values_mut() {
                let Some(args) = service.pointer_mut("/build/args").and_then(Value::as_object_mut) else { continue };
                for (name, value) in args.iter_mut() {
                    if value.is_null()
                        && let Some(v) = self.vars.get(name)
                    {
                        *value = Value::String(v.clone());
                    }
                }
            }
        }
        escape_dollars(&mut doc);
        yaml::render(&doc).map_err(ComposeError::Project)
    }
}

/// Write every `$` of the document's strings as `$$`: after interpolation they are all literal.
fn escape_dollars(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Array(items) => items.iter_mut().for_each(escape_dollars),
        Value::Object(map) => map.values_mut().for_each(escape_dollars),
        _ => {}
    }
}
