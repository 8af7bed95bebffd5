//! Unit tests of the engine against fakes, in the manner of BuildKit's scheduler tests: no namespaces, no
//! registry, no network, milliseconds each. [`FakeExecutor`] interprets a tiny command language instead of
//! running a shell (`write PATH TEXT; echo TEXT; fail CODE; set FLAG; wait-for FLAG; sleep MS`), writes what it is told into
//! an upper directory and records every request; [`MapImageSource`] serves images written into the test's store
//! from memory; [`FakeFetcher`] serves ADD URLs from a map. The store is a real one in a temporary directory.

mod cache_matrix;
mod stages;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::ports::{
    Changes, CommitChanges, ExecOutcome, ExecRequest, Executor, ExitStatus, Fetcher, ImageSource, OutputSink, Platform,
    PullPolicy, StepChanges, Worker,
};
use super::progress::{Event, ProgressSink, Stream};
use super::{BuildRequest, BuildResult};
use crate::error::{Error, Result};
use crate::export::image::{LoadedImage, MediaTypes, write_image};
use crate::layer::{LayerOptions, collect_tree};
use crate::store::Store;

/// A directory removed when dropped.
pub(super) struct TestDir(PathBuf);

impl TestDir {
    pub(super) fn new(name: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rbuild-engine-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Flags the fake's `set`/`wait-for` commands share between steps (for ordering tests).
#[derive(Default)]
pub(super) struct Flags(Mutex<BTreeSet<String>>);

/// Runs steps by interpreting the last argv element as `;`-separated commands.
pub(super) struct FakeExecutor<'a> {
    store: &'a Store,
    pub requests: Mutex<Vec<ExecRequest>>,
    pub flags: Flags,
}

impl<'a> FakeExecutor<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        FakeExecutor { store, requests: Mutex::new(Vec::new()), flags: Flags::default() }
    }

    fn interpret(&self, script: &str, upper: &Path, output: OutputSink<'_>) -> Result<ExitStatus> {
        for command in script.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
            match verb {
                "write" => {
                    let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    let file = upper.join(path.trim_start_matches('/'));
                    fs::create_dir_all(file.parent().unwrap()).map_err(Error::io("create", upper))?;
                    fs::write(&file, text).map_err(Error::io("write", &file))?;
                }
                "echo" => output(Stream::Stdout, rest),
                "fail" => return Ok(ExitStatus::Exited(rest.parse().unwrap_or(1))),
                "set" => {
                    self.flags.0.lock().unwrap().insert(rest.to_string());
                }
                "wait-for" => {
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    while !self.flags.0.lock().unwrap().contains(rest) && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    // Give the scheduler time to see what set the flag.
                    std::thread::sleep(Duration::from_millis(200));
                }
                "sleep" => std::thread::sleep(Duration::from_millis(rest.parse().unwrap_or(0))),
                "true" => {}
                other => panic!("the fake executor does not know {other:?}"),
            }
        }
        Ok(ExitStatus::Exited(0))
    }

    /// How many steps ran.
    pub(super) fn runs(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The scripts of the steps that ran, in order.
    pub(super) fn scripts(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|r| r.argv.last().cloned().unwrap_or_default()).collect()
    }
}

impl Executor for FakeExecutor<'_> {
    fn run(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome> {
        self.requests.lock().unwrap().push(req.clone());
        let upper = self.store.tmp().path("fake-upper");
        fs::create_dir_all(&upper).map_err(Error::io("create", &upper))?;
        let script = req.argv.last().cloned().unwrap_or_default();
        let status = self.interpret(&script, &upper, output)?;
        if status.success() {
            let entries = collect_tree(&upper)?;
            commit(StepChanges { dir: &upper, changes: Changes::Entries(entries), as_snapshot: true })?;
        }
        let _ = crate::fsops::remove_path(&upper);
        Ok(ExecOutcome { status, notes: Vec::new() })
    }
}

/// Images by name, written into the store beforehand.
#[derive(Default)]
pub(super) struct MapImageSource {
    pub images: BTreeMap<String, LoadedImage>,
    pub resolved: Mutex<Vec<(String, PullPolicy)>>,
}

impl ImageSource for MapImageSource {
    fn resolve(&self, reference: &str, _platform: &Platform, pull: PullPolicy) -> Result<LoadedImage> {
        self.resolved.lock().unwrap().push((reference.to_string(), pull));
        self.images
            .get(reference)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound { name: reference.to_string(), root: PathBuf::from("/memory") })
    }
}

/// ADD URLs served from a map; git is refused.
#[derive(Default)]
pub(super) struct FakeFetcher {
    pub urls: Mutex<BTreeMap<String, String>>,
}

impl Fetcher for FakeFetcher {
    fn url(&self, url: &str, dest: &Path) -> Result<Option<SystemTime>> {
        let body = self.urls.lock().unwrap().get(url).cloned();
        let body = body.ok_or_else(|| Error::Fetch { message: format!("no such URL {url}") })?;
        fs::write(dest, body).map_err(Error::io("write", dest))?;
        Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)))
    }

    fn git(&self, url: &str, _dest: &Path, _keep_git_dir: bool) -> Result<crate::context::git::GitCheckout> {
        Err(Error::Fetch { message: format!("no git in tests: {url}") })
    }
}

/// Progress events as text lines (`started NAME`, `cached`, `note TEXT`, ...).
#[derive(Default)]
pub(super) struct Recorder(pub Mutex<Vec<String>>);

impl ProgressSink for Recorder {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::Started { name, .. } => format!("started {name}"),
            Event::Output { line, .. } => format!("output {line}"),
            Event::Cached { .. } => "cached".to_string(),
            Event::Done { .. } => "done".to_string(),
            Event::Failed { message, .. } => format!("failed {message}"),
            Event::Note { text } => format!("note {text}"),
            Event::ImageWritten { digest, .. } => format!("image {digest}"),
        };
        self.0.lock().unwrap().push(line);
    }
}

/// A store, a context directory, and images for the image source.
pub(super) struct Fixture {
    _dir: TestDir,
    pub store: Store,
    pub context: PathBuf,
    pub images: BTreeMap<String, LoadedImage>,
}

impl Fixture {
    pub(super) fn new(name: &str) -> Fixture {
        let dir = TestDir::new(name);
        let store = Store::open(&dir.path().join("store")).unwrap();
        let context = dir.path().join("context");
        fs::create_dir_all(&context).unwrap();
        Fixture { _dir: dir, store, context, images: BTreeMap::new() }
    }

    /// Write a context file.
    pub(super) fn file(&self, rel: &str, text: &str) {
        let p = self.context.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
    }

    /// An image of one layer holding `files` (path, content; a content `-> TARGET` makes a symlink), with
    /// `config` merged into its config.
    pub(super) fn image(&mut self, name: &str, files: &[(&str, &str)], config: Value) {
        let tree = self.store.tmp().path("image-tree");
        for (rel, text) in files {
            let p = tree.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            match text.strip_prefix("-> ") {
                Some(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
                None => fs::write(&p, text).unwrap(),
            }
        }
        fs::create_dir_all(&tree).unwrap();
        let entries = collect_tree(&tree).unwrap();
        let layer = self.store.write_layer(&entries, &LayerOptions::default()).unwrap();
        let mut full = json!({
            "architecture": Platform::host().architecture, "os": "linux",
            "config": {}, "rootfs": { "type": "layers", "diff_ids": [] }, "history": [],
        });
        if let (Some(c), Some(extra)) = (full["config"].as_object_mut(), config.as_object()) {
            c.extend(extra.clone());
        }
        let image =
            write_image(&self.store, full, &[], &[layer], &[], "2020-01-01T00:00:00Z", MediaTypes::Oci).unwrap();
        let _ = fs::remove_dir_all(&tree);
        self.images.insert(name.to_string(), image);
    }

    /// A worker over the fixture's store with a fresh fake executor, these images and a fake fetcher.
    pub(super) fn worker<'a>(&'a self, executor: &'a FakeExecutor<'a>, fetcher: &'a FakeFetcher) -> Worker<'a> {
        let images = MapImageSource { images: self.images.clone(), resolved: Mutex::new(Vec::new()) };
        Worker::new(&self.store, Box::new(Shared(executor)), Box::new(images), Box::new(Shared(fetcher)), 4)
    }

    pub(super) fn request(&self, dockerfile: &str) -> BuildRequest {
        BuildRequest::new(self.context.clone(), "Dockerfile".into(), dockerfile.into())
    }
}

/// A port borrowed by the worker while the test keeps looking at it.
struct Shared<'a, T>(&'a T);

impl<T: Executor> Executor for Shared<'_, T> {
    fn run(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome> {
        self.0.run(req, output, commit)
    }
}

impl<T: Fetcher> Fetcher for Shared<'_, T> {
    fn url(&self, url: &str, dest: &Path) -> Result<Option<SystemTime>> {
        self.0.url(url, dest)
    }

    fn git(&self, url: &str, dest: &Path, keep_git_dir: bool) -> Result<crate::context::git::GitCheckout> {
        self.0.git(url, dest, keep_git_dir)
    }
}

/// Build `req` on `worker` with a recorder.
pub(super) fn build(worker: &Worker<'_>, req: &BuildRequest) -> (Result<BuildResult>, Vec<String>) {
    let recorder = Recorder::default();
    let result = super::build(worker, req, &recorder);
    (result, recorder.0.into_inner().unwrap())
}

/// The content of `rel` in a built image's filesystem (the topmost snapshot that has it).
pub(super) fn file_in(result: &BuildResult, rel: &str) -> Option<String> {
    result.snapshots.iter().rev().find_map(|s| fs::read_to_string(s.join(rel)).ok())
}
