//! The reproducibility layer: whether results can be trusted and explained. [`lock`] (lock
//! files: an experiment's keys, digests and headline metrics, meant to be committed),
//! [`verify`] (a run's directory checked, then its stages rerun from scratch and compared),
//! [`diff`] (what differs between two recorded runs, and why).

pub mod diff;
pub mod lock;
pub mod verify;
