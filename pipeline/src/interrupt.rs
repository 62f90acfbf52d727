//! Ctrl-C and SIGTERM as a flag, for the commands that run for long and must record what they
//! leave unfinished (a sweep, a Slurm watch): they see the flag, write what they know and stop,
//! instead of dying with their table half a story.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received (SIGINT or SIGTERM), or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM from now on. The handler resets itself (SA_RESETHAND): a second
/// Ctrl-C ends the program at once.
pub fn install() {
    #[cfg(unix)]
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe; the
    // sigaction struct is fully initialised (zeroed, then the fields we use set).
    unsafe {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The signal received since [`install`], or 0.
pub fn received() -> i32 {
    RECEIVED.load(Ordering::SeqCst)
}
