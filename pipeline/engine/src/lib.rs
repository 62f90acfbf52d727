//! The pipeline engine: experiment files, the stage graph, hashing, the cache and run records,
//! diff, verify, lock and gc. It schedules and caches stages and knows nothing of what they
//! compute: stage kinds come in through [`kind::Registry`], filled by the binary (the
//! `pipeline` crate's `registry` module), and so does the HTML report
//! ([`execute::Reporter::run_finished`]). It builds and tests without the domain crate.

pub mod builtin;
pub mod cache;
pub mod cas;
pub mod checked;
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
pub mod plan;
pub mod query;
pub mod record;
pub mod remote;
pub mod run_index;
pub mod status;
pub mod sweep;
pub mod verify;
