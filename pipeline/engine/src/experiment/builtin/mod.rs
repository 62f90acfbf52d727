//! Stage kinds that belong to the engine itself rather than to a domain.

pub mod shell;
