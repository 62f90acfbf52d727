//! The only place that maps stage kind names to code: the engine's built-in kinds and the
//! domain's stages from the `stages` crate.

use crate::builtin::shell::Shell;
use crate::kind::Registry;

/// Every kind this build of `pipeline` knows.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.add(Box::new(Shell));
    r
}
