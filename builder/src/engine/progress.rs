//! Build progress as events (a step started, printed a line, hit the cache, finished or failed), and the two
//! renderers that need no terminal: BuildKit-style plain lines and rawjson (one JSON object per event, with a
//! timestamp). The live terminal view lives in the CLI; it receives the same events.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Which output stream a step's line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Something that happened during a build. Steps are numbered from 1 in the order they start.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A step started: `name` is `[stage i/n] INSTRUCTION`.
    Started {
        step: usize,
        stage: &'a str,
        name: &'a str,
    },
    /// A line of the step's output (without its newline).
    Output {
        step: usize,
        stream: Stream,
        line: &'a str,
    },
    /// The step's result came from the cache.
    Cached {
        step: usize,
    },
    Done {
        step: usize,
        elapsed: Duration,
    },
    /// The step failed; `message` says how (the full error follows the build).
    Failed {
        step: usize,
        message: &'a str,
    },
    /// A note about the build as a whole (a warning, a fallback, what the cache did).
    Note {
        text: &'a str,
    },
    /// The build's image was written: its own step `#N`, and the part of a run of several builds it belongs to
    /// (a platform, a service; empty for a build of its own).
    ImageWritten {
        step: usize,
        digest: &'a str,
        part: &'a str,
    },
}

impl Event<'_> {
    /// The plain-text line of an `ImageWritten` event (`#6 writing image sha256:... done`).
    pub fn image_written_line(step: usize, digest: &str, part: &str) -> String {
        if part.is_empty() {
            format!("#{step} writing image {digest} done")
        } else {
            format!("#{step} [{part}] writing image {digest} done")
        }
    }
}

/// Receives a build's events; called from several stage threads at once.
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// The step numbers of a run of several builds at once (a multi-platform build's platforms, a Compose project's
/// services): one sequence, so `#N` names one step across them all.
#[derive(Debug, Default)]
pub struct StepNumbers(std::sync::atomic::AtomicUsize);

/// One part's events in a run of several builds at once (a platform's, a service's): its steps renumbered into the
/// run's sequence, its step names, stages and notes labelled with the part (`[linux/arm64 build 2/4] RUN make`).
pub struct Labelled<'a> {
    inner: &'a dyn ProgressSink,
    label: String,
    numbers: &'a StepNumbers,
    own: Mutex<std::collections::BTreeMap<usize, usize>>,
}

impl std::fmt::Debug for Labelled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labelled").field("label", &self.label).finish()
    }
}

impl<'a> Labelled<'a> {
    pub fn new(inner: &'a dyn ProgressSink, label: impl Into<String>, numbers: &'a StepNumbers) -> Self {
        Labelled { inner, label: label.into(), numbers, own: Mutex::new(Default::default()) }
    }

    fn number(&self, step: usize) -> usize {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        *own.entry(step).or_insert_with(|| self.numbers.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }
}

impl ProgressSink for Labelled<'_> {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Started { step, stage, name } => {
                let stage = format!("{}/{stage}", self.label);
                let name = match name.strip_prefix('[') {
                    Some(rest) => format!("[{} {rest}", self.label),
                    None => format!("[{}] {name}", self.label),
                };
                self.inner.event(&Event::Started { step: self.number(*step), stage: &stage, name: &name })
            }
            Event::Output { step, stream, line } => {
                self.inner.event(&Event::Output { step: self.number(*step), stream: *stream, line })
            }
            Event::Cached { step } => self.inner.event(&Event::Cached { step: self.number(*step) }),
            Event::Done { step, elapsed } => {
                self.inner.event(&Event::Done { step: self.number(*step), elapsed: *elapsed })
            }
            Event::Failed { step, message } => self.inner.event(&Event::Failed { step: self.number(*step), message }),
            Event::Note { text } => self.inner.event(&Event::Note { text: &format!("[{}] {text}", self.label) }),
            Event::ImageWritten { step, digest, part } => {
                let part = if part.is_empty() { self.label.clone() } else { format!("{} {part}", self.label) };
                self.inner.event(&Event::ImageWritten { step: self.number(*step), digest, part: &part })
            }
        }
    }
}

/// No progress at all.
#[derive(Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _: &Event<'_>) {}
}

/// BuildKit's plain form: `#3 [build 2/4] RUN make`, `#3 <output line>`, `#3 DONE 1.2s`, `#3 CACHED`, on a writer.
pub struct PlainProgress<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> std::fmt::Debug for PlainProgress<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainProgress")
    }
}

impl<W: Write + Send> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        PlainProgress { out: Mutex::new(out) }
    }
}

impl<W: Write + Send> ProgressSink for PlainProgress<W> {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::Started { step, name, .. } => format!("#{step} {name}"),
            Event::Output { step, line, .. } => format!("#{step} {line}"),
            Event::Cached { step } => format!("#{step} CACHED"),
            Event::Done { step, elapsed } => format!("#{step} DONE {:.1}s", elapsed.as_secs_f64()),
            Event::Failed { step, message } => format!("#{step} ERROR: {message}"),
            Event::Note { text } => text.to_string(),
            Event::ImageWritten { step, digest, part } => Event::image_written_line(*step, digest, part),
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One JSON object per line and event: `{"time": "...", "unix_nanos": N, "event": "started", "step": 3, ...}`.
pub struct JsonProgress<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> std::fmt::Debug for JsonProgress<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonProgress")
    }
}

impl<W: Write + Send> JsonProgress<W> {
    pub fn new(out: W) -> Self {
        JsonProgress { out: Mutex::new(out) }
    }
}

impl<W: Write + Send> ProgressSink for JsonProgress<W> {
    fn event(&self, event: &Event<'_>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut v = match event {
            Event::Started { step, stage, name } => {
                json!({"event": "started", "step": step, "stage": stage, "name": name})
            }
            Event::Output { step, stream, line } => json!({
                "event": "output", "step": step, "line": line,
                "stream": if *stream == Stream::Stdout { "stdout" } else { "stderr" },
            }),
            Event::Cached { step } => json!({"event": "cached", "step": step}),
            Event::Done { step, elapsed } => json!({"event": "done", "step": step, "seconds": elapsed.as_secs_f64()}),
            Event::Failed { step, message } => json!({"event": "failed", "step": step, "error": message}),
            Event::Note { text } => json!({"event": "note", "text": text}),
            Event::ImageWritten { step, digest, part } => {
                json!({"event": "image", "step": step, "digest": digest, "part": part})
            }
        };
        v["unix_nanos"] = json!(now.as_nanos() as u64);
        v["time"] = json!(super::config::rfc3339(now.as_secs() as i64));
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{v}");
        }
    }
}
