//! The store layer: where results are kept, content-addressed, and found again by key. It
//! never computes a key and knows nothing of runs. Read bottom-up: [`cas`] (every distinct
//! content once, as blobs), [`checked`] (files known to still hold their digest),
//! [`manifest`] (what an entry holds), [`cache`] (entries: lookup, publication, locks and
//! leases), [`remote`] (a shared cache on an object store, behind the local one).

pub mod cache;
pub mod cas;
pub mod checked;
pub(crate) mod files;
pub mod manifest;
pub mod remote;
