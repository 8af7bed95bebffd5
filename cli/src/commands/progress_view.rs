//! Choosing and drawing build progress: `plain` and `rawjson` come from the builder; `tty` is a live view here
//! (indicatif): a spinner per running step with its timer and last output line, finished steps printed above.
//! In tty mode every output line also goes to a log file in the store (`logs/`), named once, so that nothing the
//! view leaves out is lost. Every line fits the terminal's width (read at each event, so a resize re-lays the
//! steps out): a step's name is cut to leave its latest output line a third of the width, down to 40 columns.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rbuild_builder::engine::{Event, JsonProgress, NoProgress, PlainProgress, ProgressSink};

use super::terminal_text::{cut, step_prefix, usable_width, wrap};

/// The progress renderer for `--progress MODE` (and `-q`).
pub fn choose(mode: &str, quiet: bool, store_root: &Path) -> Box<dyn ProgressSink> {
    let mode = if quiet { "quiet" } else { mode };
    match mode {
        "quiet" => Box::new(NoProgress),
        "rawjson" => Box::new(JsonProgress::new(std::io::stderr())),
        "tty" => Box::new(TtyProgress::new(store_root)),
        "auto" if std::io::stderr().is_terminal() => Box::new(TtyProgress::new(store_root)),
        _ => Box::new(PlainProgress::new(std::io::stderr())),
    }
}

/// The live terminal view.
pub struct TtyProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, (ProgressBar, String)>>,
    log: Mutex<Option<(PathBuf, std::fs::File)>>,
    /// The width the step lines were last laid out for.
    width: std::sync::atomic::AtomicUsize,
    /// Whether the log file was named already (once per build).
    log_named: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TtyProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TtyProgress")
    }
}

impl TtyProgress {
    fn new(store_root: &Path) -> Self {
        let dir = store_root.join("logs");
        let log = std::fs::create_dir_all(&dir).ok().and_then(|_| {
            prune_logs(&dir, 20);
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let path = dir.join(format!("build-{secs}-{}.log", std::process::id()));
            std::fs::File::create(&path).ok().map(|f| (path, f))
        });
        TtyProgress {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            log: Mutex::new(log),
            width: std::sync::atomic::AtomicUsize::new(0),
            log_named: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Name the log file, the first time only.
    fn name_log(&self) {
        if self.log_named.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Some(p) = self.log.lock().ok().and_then(|g| g.as_ref().map(|(p, _)| p.clone())) {
            self.print(&format!("full log: {}", p.display()));
        }
    }

    /// A line above the running steps, wrapped at words to the terminal's width (nothing is cut from it).
    fn print(&self, text: &str) {
        let _ = self.multi.println(wrap(text, usable_width()));
    }

    /// Lay the running steps out again when the terminal's width changed.
    fn fit_to_width(&self, bars: &HashMap<usize, (ProgressBar, String)>) {
        let width = usable_width();
        if self.width.swap(width, std::sync::atomic::Ordering::SeqCst) != width {
            for (step, (bar, name)) in bars {
                bar.set_prefix(step_prefix(*step, name, width));
            }
        }
    }

    fn log(&self, line: &str) {
        if let Ok(mut guard) = self.log.lock()
            && let Some((_, f)) = guard.as_mut()
        {
            let _ = writeln!(f, "{line}");
        }
    }

    fn finish(&self, step: usize, status: &str) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some((bar, name)) = bars.remove(&step)
        {
            let elapsed = bar.elapsed().as_secs_f64();
            bar.finish_and_clear();
            let tail = format!(" {status} {elapsed:.1}s");
            let head = cut(&format!("#{step} {name}"), usable_width().saturating_sub(tail.chars().count()));
            let _ = self.multi.println(format!("{head}{tail}"));
        }
    }
}

impl ProgressSink for TtyProgress {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Started { step, name, .. } => {
                self.log(&format!("#{step} {name}"));
                let bar = self.multi.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_prefix(step_prefix(*step, name, usable_width()));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut bars) = self.bars.lock() {
                    bars.insert(*step, (bar, name.to_string()));
                    self.fit_to_width(&bars);
                }
            }
            Event::Output { step, line, .. } => {
                self.log(&format!("#{step} {line}"));
                if let Ok(bars) = self.bars.lock() {
                    self.fit_to_width(&bars);
                    if let Some((bar, _)) = bars.get(step) {
                        bar.set_message(line.chars().take(400).collect::<String>());
                    }
                }
            }
            Event::Cached { step } => {
                self.log(&format!("#{step} CACHED"));
                self.finish(*step, "CACHED");
            }
            Event::Done { step, elapsed } => {
                self.log(&format!("#{step} DONE {:.1}s", elapsed.as_secs_f64()));
                self.finish(*step, "DONE");
            }
            Event::Failed { step, message } => {
                self.log(&format!("#{step} ERROR: {message}"));
                self.finish(*step, "ERROR");
                self.name_log();
            }
            Event::Note { text } => {
                self.log(text);
                self.print(text);
                self.name_log();
            }
            Event::ImageWritten { step, digest, part } => {
                let line = Event::image_written_line(*step, digest, part);
                self.log(&line);
                self.print(&line);
                self.name_log();
            }
        }
    }
}

impl Drop for TtyProgress {
    fn drop(&mut self) {
        if let Ok(bars) = self.bars.lock() {
            for (bar, _) in bars.values() {
                bar.finish_and_clear();
            }
        }
    }
}

/// Keep the newest `keep` build logs.
fn prune_logs(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    logs.sort();
    if logs.len() > keep {
        for old in &logs[..logs.len() - keep] {
            let _ = std::fs::remove_file(old);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_lines_leave_room_for_the_output_line() {
        let name = "[stage-0 2/5] RUN apt-get update && apt-get install -y build-essential curl git";
        for width in [40usize, 60, 80, 120] {
            let prefix = super::step_prefix(3, name, width);
            let left = width - prefix.chars().count() - 8;
            assert!(left >= (width / 3).max(12), "{width}: {prefix:?} leaves {left}");
        }
        assert_eq!(super::step_prefix(1, "[a 1/1] RUN x", 120), "#1 [a 1/1] RUN x");
        assert_eq!(super::cut("abcdef", 4), "abc…");
        assert_eq!(
            super::wrap("#3 writing image sha256:0123456789abcdef done", 20),
            "#3 writing image\nsha256:0123456789abc\ndef done"
        );
    }
}
