//! The only place that maps stage kind names to code: the engine's built-in kinds and the
//! domain's stages from the `stages` crate. Each adapter turns validated parameters into the
//! domain's config type, calls the domain function, and reports back.

mod data;
mod evaluate;
mod model;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use stages::model::Backend;
use stages::validate::ConfigError;

use pipeline_engine::experiment::builtin::shell::Shell;
use pipeline_engine::experiment::kind::{ParamProblem, Params, ProgressSink, Registry, StageError};

use crate::device::Device;

/// Every kind this build of `pipeline` knows, the model's kinds computing on `device`'s
/// backend, and runs recording `device`'s record.
pub fn on_device(device: &Device) -> Registry {
    let mut registry = registry_on(device.backend.clone());
    if let Some(record) = &device.record {
        registry.set_device(record.clone());
    }
    registry
}

/// Every kind this build of `pipeline` knows, the model's kinds computing on `backend`.
fn registry_on(backend: Arc<dyn Backend>) -> Registry {
    let mut r = Registry::new();
    r.add(Box::new(Shell));
    r.add(Box::new(data::Load));
    r.add(Box::new(data::Normalize));
    r.add(Box::new(data::Split));
    r.add(Box::new(model::Model));
    r.add(Box::new(model::Features(backend.clone())));
    r.add(Box::new(model::Train(backend)));
    r.add(Box::new(evaluate::Evaluate));
    r.add(Box::new(evaluate::Plot));
    r
}

/// Deserializes a stage's whole parameter table into a domain config type.
fn config<T: DeserializeOwned>(params: &Params) -> Result<T, String> {
    let table: toml::Table = params.to_table();
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_string())
}

fn run_config<T: DeserializeOwned>(params: &Params) -> Result<T, StageError> {
    config(params).map_err(StageError::Message)
}

/// An integer parameter that must fit an unsigned type (sizes, counts, seeds), named when it
/// does not: `-1` is the user's mistake on that key, not a deserialization failure elsewhere.
fn unsigned<T: TryFrom<i64>>(params: &Params, name: &'static str) -> Result<T, ConfigError> {
    let value = params
        .int(name)
        .map_err(|e| ConfigError::new(name, e.to_string()))?;
    T::try_from(value).map_err(|_| {
        ConfigError::new(
            name,
            if value < 0 {
                format!("must not be negative, not {value}")
            } else {
                format!("is too large: {value}")
            },
        )
    })
}

fn float(params: &Params, name: &'static str) -> Result<f64, ConfigError> {
    params
        .float(name)
        .map_err(|e| ConfigError::new(name, e.to_string()))
}

/// A domain config's validation error, placed on its parameter.
fn problem(e: ConfigError) -> ParamProblem {
    ParamProblem {
        param: e.field.to_string(),
        message: e.message,
    }
}

/// Lets domain code report progress to the engine's display.
struct Progress<'a>(&'a dyn ProgressSink);

impl stages::progress::Progress for Progress<'_> {
    fn start(&self, phase: &str, total: u64) {
        self.0.start(phase, total);
    }
    fn advance(&self, n: u64) {
        self.0.advance(n);
    }
    fn message(&self, text: &str) {
        self.0.message(text);
    }
}

/// Converts a serializable domain report into a TOML table for the run record.
fn notes_of<T: serde::Serialize>(report: &T) -> std::collections::BTreeMap<String, toml::Value> {
    toml::Table::try_from(report)
        .map(|t| t.into_iter().collect())
        .unwrap_or_default()
}
