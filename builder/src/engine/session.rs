//! One build in progress: what its stages share (the worker, the request, the parsed Dockerfile, step numbers,
//! cancellation, the cache records used, cache mounts).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::context::IgnoreMatcher;
use crate::store::Store;

use super::{BuildRequest, Event, ProgressSink, Worker, cache};

/// One build in progress: what its stages share.
pub(crate) struct Session<'a> {
    pub worker: &'a Worker<'a>,
    pub store: &'a Store,
    pub req: &'a BuildRequest,
    pub df: &'a crate::dockerfile::Dockerfile,
    pub ignore: &'a IgnoreMatcher,
    pub progress: &'a dyn ProgressSink,
    /// The last step number given out.
    pub steps: AtomicUsize,
    /// Set after a stage failed: the others stop at their next instruction.
    pub cancel: AtomicBool,
    /// Context files' content hashes, kept between builds.
    pub file_hashes: crate::context::FileHashes,
    /// Files COPY linked from its previous run instead of copying them.
    pub files_linked: AtomicUsize,
    /// Cache records this build used or made: (stage, key, result), for `--cache-to`.
    pub used: std::sync::Mutex<Vec<(usize, String, cache::Cached)>>,
    /// Cache mount directories this build's steps used (names under `mounts/`).
    pub mounts_used: std::sync::Mutex<BTreeSet<String>>,
    /// With `--no-cache`, cache mounts start empty and what steps leave in them is dropped after the build (as
    /// BuildKit; testCacheMountModeNoCache): their ids get this build's token, their directories are removed.
    pub throwaway_mounts: Option<ThrowawayMounts>,
}

/// The cache mount directories made for this build only (see [`Session::throwaway_mounts`]).
#[derive(Debug)]
pub struct ThrowawayMounts {
    /// Unique to this build: added to each cache mount's id.
    pub token: String,
    /// The directory names (under the store's `mounts/`) made with it.
    pub names: std::sync::Mutex<BTreeSet<String>>,
}

impl ThrowawayMounts {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        ThrowawayMounts { token: format!("no-cache {} {nanos}", std::process::id()), names: Default::default() }
    }

    /// Remove the directories (and their lock files; private copies `NAME-N` too).
    pub(crate) fn remove(&self, store: &Store, tree_ops: &dyn crate::store::TreeOps) {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let dir = store.root().join("mounts");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let ours = names.iter().any(|n| {
                file.strip_prefix(n.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest == ".lock" || rest.strip_prefix('-').is_some_and(|r| !r.is_empty())
                })
            });
            if ours {
                let _ = tree_ops.remove(&entry.path());
            }
        }
    }
}

impl Session<'_> {
    pub(crate) fn next_step(&self) -> usize {
        self.steps.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn note_cache_use(&self, stage: usize, key: &str, cached: &cache::Cached) {
        if let Ok(mut used) = self.used.lock() {
            used.push((stage, key.to_string(), cached.clone()));
        }
    }

    pub(crate) fn note(&self, text: &str) {
        self.progress.event(&Event::Note { text });
    }
}
