//! The pipeline engine: experiment files, the stage graph, hashing, the cache and run records,
//! diff, verify, lock and gc. It schedules and caches stages and knows nothing of what they
//! compute: stage kinds come in through [`experiment::kind::Registry`], filled by the binary
//! (the `pipeline` crate's `registry` module), and so does the HTML report
//! ([`run::reporter::Reporter::run_finished`]). It builds and tests without the domain crate.
//!
//! It is built in layers, each using only the layers before it; read it in this order:
//!
//! 1. The foundation: [`hash`] (canonical digests of parameters and files), [`human`]
//!    (durations, sizes and lists written for people), [`diagnostic`] (errors placed on a
//!    line of an experiment file) and [`device`] (the device a run computes on).
//! 2. [`experiment`]: the experiment file, the contract of a stage kind and its registry,
//!    the stage graph, the engine's own kinds, and what a sweep is.
//! 3. [`store`]: where results are kept by key: content-addressed blobs, files known to hold
//!    their digest, manifests, cache entries with their locks and leases, the remote cache.
//! 4. [`runs`]: what was run: run records, the index that lists them, queries over them.
//! 5. [`run`]: running an experiment against the artifacts directory (cache and runs): its
//!    errors, reporter, stage keys, the run loop, plans and status without running, and gc.
//! 6. [`repro`]: lock files, verify and diff, over recorded and fresh runs.
//! 7. [`sweep`]: a sweep's id, the queue of its points, their joint plan and its table.

pub mod device;
pub mod diagnostic;
pub mod experiment;
pub mod hash;
pub mod human;
pub mod repro;
pub mod run;
pub mod runs;
pub mod store;
pub mod sweep;
