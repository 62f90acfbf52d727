//! How long-running domain work reports progress without knowing who displays it.

/// Receives progress from long work (decoding images, epochs, batches).
///
/// The engine adapts this to its terminal display; tests pass [`NoProgress`].
pub trait Progress: Sync {
    /// Announces a new phase of `total` units (0 when the total is unknown).
    fn start(&self, phase: &str, total: u64);
    /// Marks `n` more units as done.
    fn advance(&self, n: u64);
    /// Replaces the short status text shown beside the bar (e.g. a live loss).
    fn message(&self, text: &str);
}

/// A [`Progress`] that discards everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _text: &str) {}
}
