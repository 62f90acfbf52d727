//! Uploads of computed entries to the remote cache, running in the background while the next
//! stages run, and whether the remote answered: a run that finds it down warns once and goes
//! on locally.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::store::cache::Entry;
use crate::store::remote::{Pushed, Remote, RemoteError};

/// Background pushes of computed entries, and whether the remote answered.
#[derive(Default)]
pub(super) struct Pushes {
    running: Vec<std::thread::JoinHandle<Result<Pushed, RemoteError>>>,
    /// Set once the remote failed to answer: the run warns once and goes on locally.
    down: Arc<AtomicBool>,
    warnings: Vec<String>,
}

impl Pushes {
    pub(super) fn start(&mut self, remote: &Arc<Remote>, entry: Entry) {
        if self.down.load(Ordering::SeqCst) {
            return;
        }
        let (remote, down) = (remote.clone(), self.down.clone());
        self.running.push(std::thread::spawn(move || {
            if down.load(Ordering::SeqCst) {
                return Ok(Pushed::Present { blobs: 0, bytes: 0 });
            }
            let pushed = remote.push(&entry);
            if let Err(RemoteError::Backend { .. }) = &pushed {
                down.store(true, Ordering::SeqCst);
            }
            pushed
        }));
    }

    /// A remote problem seen while fetching: one warning, and no more remote use where the
    /// remote is unreachable.
    pub(super) fn failed(&mut self, error: &RemoteError) -> String {
        if let RemoteError::Backend { .. } = error {
            self.down.store(true, Ordering::SeqCst);
            format!("{error}; continuing without the remote cache")
        } else {
            format!("{error}; recomputing")
        }
    }

    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Waits for every push; the warnings to show.
    pub(super) fn finish(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.warnings);
        let mut unreachable_told = false;
        for handle in self.running.drain(..) {
            match handle.join() {
                Ok(Ok(Pushed::Differs(finding))) => out.push(finding.to_string()),
                Ok(Ok(_)) => {}
                Ok(Err(e @ RemoteError::Backend { .. })) => {
                    if !unreachable_told {
                        out.push(format!("{e}; results stay local (`pipeline push` later)"));
                        unreachable_told = true;
                    }
                }
                Ok(Err(e)) => out.push(format!("push: {e}")),
                Err(_) => out.push("a push to the remote cache panicked".into()),
            }
        }
        out
    }
}
