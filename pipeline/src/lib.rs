//! The pipeline engine: experiment files, the stage graph, hashing, the cache and run records.
//! It schedules and caches stages; what a stage computes lives in the `stages` crate, reached
//! only through [`registry`].

pub mod builtin;
pub mod cache;
pub mod diagnostic;
pub mod diff;
pub mod execute;
pub mod experiment;
pub mod fingerprint;
pub mod gc;
pub mod graph;
pub mod hash;
pub mod human;
pub mod kind;
pub mod lock;
pub mod record;
pub mod registry;
pub mod report;
pub mod status;
pub mod verify;
