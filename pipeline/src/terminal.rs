//! The terminal view of a run: one line per stage, a bar while a stage reports progress, and
//! plain lines when stderr is not a terminal (CI logs, pipes).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use pipeline_engine::experiment::kind::ProgressSink;
use pipeline_engine::experiment::Stage;
use pipeline_engine::human::format_seconds;
use pipeline_engine::run::reporter::Reporter;
use pipeline_engine::runs::record::{CacheUse, RunRecord};

pub struct Terminal {
    interactive: bool,
    current: Mutex<Option<ProgressBar>>,
    prefix: Mutex<String>,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal {
            interactive: std::io::stderr().is_terminal(),
            current: Mutex::new(None),
            prefix: Mutex::new(String::new()),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(guard) = self.current.lock() {
            if let Some(bar) = guard.as_ref() {
                f(bar);
            }
        }
    }

    fn take_bar(&self) -> Option<ProgressBar> {
        self.current.lock().ok().and_then(|mut g| g.take())
    }

    fn prefix(&self) -> String {
        self.prefix.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// A line that stays: printed above the bar when one is shown, else on stderr.
    fn line_above_bar(&self, text: &str) {
        let mut shown = false;
        self.with_bar(|bar| {
            if self.interactive {
                bar.println(text);
                shown = true;
            }
        });
        if !shown {
            eprintln!("{text}");
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl ProgressSink for Terminal {
    fn start(&self, phase: &str, total: u64) {
        if !self.interactive {
            eprintln!("{}   {phase}", self.prefix());
        }
        self.with_bar(|bar| {
            bar.set_position(0);
            if total > 0 {
                bar.set_length(total);
                bar.set_style(bar_style());
            } else {
                bar.set_style(spinner_style());
            }
            bar.set_message(phase.to_string());
        });
    }

    fn advance(&self, n: u64) {
        self.with_bar(|bar| bar.inc(n));
    }

    fn message(&self, text: &str) {
        self.with_bar(|bar| bar.set_message(text.to_string()));
    }
}

impl Reporter for Terminal {
    fn stage_started(&self, stage: &Stage, index: usize, total: usize) {
        let prefix = format!("[{}/{total}] {:<10}", index + 1, stage.name);
        if let Ok(mut p) = self.prefix.lock() {
            *p = prefix.clone();
        }
        let target = if self.interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(spinner_style());
        bar.set_prefix(prefix);
        bar.set_message(stage.kind.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut g) = self.current.lock() {
            *g = Some(bar);
        }
    }

    fn progress(&self) -> &dyn ProgressSink {
        self
    }

    fn waiting(&self, stage: &Stage) {
        let text = format!(
            "waiting: another run is computing `{}` with the same inputs",
            stage.name
        );
        if self.interactive {
            self.message(&text);
        } else {
            eprintln!("{}   {text}", self.prefix());
        }
    }

    fn damaged(&self, _stage: &Stage, problems: &[String]) {
        let text = format!(
            "{}   cache entry damaged: {}; recomputing",
            self.prefix(),
            problems.join("; ")
        );
        // A line that stays, above the bar when there is one: damage is worth reading later.
        self.line_above_bar(&text);
    }

    fn remote_warning(&self, message: &str) {
        let text = format!("warning: {message}");
        self.line_above_bar(&text);
    }

    fn store_busy(&self) {
        eprintln!("waiting: `pipeline gc` is cleaning the store; the run starts when it ends");
    }

    fn stage_finished(&self, _stage: &Stage, cache: CacheUse, seconds: f64) {
        let line = format!(
            "{} {:<8} {}",
            self.prefix(),
            cache.label(),
            format_seconds(seconds)
        );
        if let Some(bar) = self.take_bar() {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
    }

    fn stage_failed(&self, _stage: &Stage, error: &str) {
        if let Some(bar) = self.take_bar() {
            bar.finish_and_clear();
        }
        eprintln!("{} FAILED: {error}", self.prefix());
    }

    fn run_finished(
        &self,
        record: &RunRecord,
        run_dir: &Path,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        crate::report::write(record, run_dir)?;
        Ok(())
    }
}
