//! The contract between the engine and a kind of stage: its parameters, inputs, outputs and
//! how it runs. The engine schedules and caches; a kind only computes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The type a parameter's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Int,
    /// A float; an integer written for it (`lr = 1`) is taken as that float.
    Float,
    Bool,
    Str,
    /// A string from a fixed list.
    Choice(&'static [&'static str]),
    /// A path relative to the data root that stays under it (see [`is_under_data_root`]).
    DataPath,
    /// Any TOML value (tables, arrays of tables); the kind checks it in [`StageKind::check`].
    Any,
    /// An array of strings.
    StrList,
}

impl ParamType {
    pub fn describe(&self) -> String {
        match self {
            ParamType::Int => "an integer".into(),
            ParamType::Float => "a number".into(),
            ParamType::Bool => "true or false".into(),
            ParamType::Str => "a string".into(),
            ParamType::DataPath => "a path relative to the data root without `..`".into(),
            ParamType::Choice(options) => format!("one of {}", quoted_list(options)),
            ParamType::Any => "a value".into(),
            ParamType::StrList => "an array of strings".into(),
        }
    }
}

/// Where a parameter's value comes from when the experiment file does not set it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamDefault {
    /// The experiment must set it.
    Required,
    /// Left out of the effective parameters when not set.
    Optional,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    /// The experiment's global `seed`.
    ExperimentSeed,
}

/// One parameter a stage kind accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: ParamDefault,
    pub help: &'static str,
}

/// One file a stage produces. `name` is what other stages refer to (`stage.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub file: String,
    /// Whether the file is also placed in the run directory (metrics, figures, checkpoint).
    pub publish: bool,
    /// Whether the bytes depend on floating-point rounding, which another instruction set
    /// (AVX2 vs AVX-512) may change; lock files compare such outputs through metrics there.
    pub floats: bool,
    /// Whether the bytes may differ between identical executions (wall-clock timings), so
    /// reproducibility checks leave the file out. Its numbers that matter belong in metrics.
    pub volatile: bool,
}

impl OutputSpec {
    pub fn new(name: &str, file: &str, publish: bool) -> Self {
        OutputSpec {
            name: name.to_string(),
            file: file.to_string(),
            publish,
            floats: false,
            volatile: false,
        }
    }

    /// Marks the output as holding timings or other values that differ run to run.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Marks the output as floating-point data.
    pub fn floats(mut self) -> Self {
        self.floats = true;
        self
    }
}

/// The inputs a kind takes from other stages.
#[derive(Debug, Clone, Copy)]
pub enum InputSlots {
    /// Exactly these named inputs, all required.
    Fixed(&'static [&'static str]),
    /// Any names the experiment chooses (for generic kinds such as `shell`).
    Any,
}

/// The effective parameters of one stage: the file's values, `--set` overrides and defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, toml::Value>,
}

impl Params {
    pub fn new(values: BTreeMap<String, toml::Value>) -> Self {
        Params { values }
    }

    pub fn values(&self) -> &BTreeMap<String, toml::Value> {
        &self.values
    }

    /// The parameters as a TOML table (for records, manifests and hashing).
    pub fn to_table(&self) -> toml::Table {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&toml::Value> {
        self.values.get(name)
    }

    pub fn int(&self, name: &str) -> Result<i64, StageError> {
        self.typed(name, toml::Value::as_integer)
    }

    pub fn float(&self, name: &str) -> Result<f64, StageError> {
        self.typed(name, toml::Value::as_float)
    }

    pub fn bool(&self, name: &str) -> Result<bool, StageError> {
        self.typed(name, toml::Value::as_bool)
    }

    pub fn str(&self, name: &str) -> Result<&str, StageError> {
        self.typed(name, toml::Value::as_str)
    }

    pub fn str_list(&self, name: &str) -> Result<Vec<String>, StageError> {
        let items = self.typed(name, toml::Value::as_array)?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| StageError::msg(format!("parameter `{name}` must hold strings")))
            })
            .collect()
    }

    /// Deserializes one parameter (a table or array of tables) into a domain config type.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, String> {
        let value = self
            .values
            .get(name)
            .ok_or_else(|| format!("parameter `{name}` is missing"))?;
        value.clone().try_into().map_err(|e: toml::de::Error| {
            // The message of a deserialization error from a detached value holds no useful
            // position; keep only its text.
            e.message().trim().to_string()
        })
    }

    fn typed<'a, T>(
        &'a self,
        name: &str,
        get: impl Fn(&'a toml::Value) -> Option<T>,
    ) -> Result<T, StageError> {
        let value = self
            .values
            .get(name)
            .ok_or_else(|| StageError::msg(format!("parameter `{name}` is not set")))?;
        get(value).ok_or_else(|| StageError::msg(format!("parameter `{name}` has the wrong type")))
    }
}

/// Receives progress from a running stage; the engine draws it on the terminal.
pub trait ProgressSink: Sync {
    /// A new phase of `total` units (0 when unknown).
    fn start(&self, phase: &str, total: u64);
    fn advance(&self, n: u64);
    fn message(&self, text: &str);
}

/// Everything a stage may read or write while it runs.
pub struct StageContext<'a> {
    /// The stage's name in the experiment.
    pub stage: &'a str,
    pub params: &'a Params,
    /// Input slot to the file holding it (read-only, inside the cache).
    pub inputs: &'a BTreeMap<String, PathBuf>,
    /// Where the stage writes its outputs: a fresh directory it owns.
    pub out_dir: &'a Path,
    pub data_root: &'a Path,
    pub progress: &'a dyn ProgressSink,
}

impl StageContext<'_> {
    pub fn input(&self, slot: &str) -> Result<&Path, StageError> {
        self.inputs
            .get(slot)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::msg(format!("input `{slot}` is not connected")))
    }

    /// An input the experiment may leave unconnected (see [`StageKind::optional_inputs`]).
    pub fn optional_input(&self, slot: &str) -> Option<&Path> {
        self.inputs.get(slot).map(PathBuf::as_path)
    }

    pub fn output(&self, file: &str) -> PathBuf {
        self.out_dir.join(file)
    }

    /// A `DataPath` parameter resolved against the data root.
    pub fn data_path(&self, name: &str) -> Result<PathBuf, StageError> {
        Ok(self.data_root.join(self.params.str(name)?))
    }
}

/// What a finished stage reports for the run record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageReport {
    /// Facts worth keeping beside the result (class counts, skipped files, ...).
    pub notes: BTreeMap<String, toml::Value>,
    /// Headline numbers, shown by `pipeline runs` and compared by `pipeline diff`.
    pub metrics: BTreeMap<String, f64>,
}

/// A stage kind failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Domain(Box<dyn std::error::Error + Send + Sync>),
}

impl StageError {
    pub fn msg(text: impl Into<String>) -> Self {
        StageError::Message(text.into())
    }

    pub fn domain(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Domain(Box::new(e))
    }
}

/// A problem with one parameter found by a kind's own check.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamProblem {
    pub param: String,
    pub message: String,
}

/// A kind of stage: `load`, `normalize`, `train`, ...
pub trait StageKind: Send + Sync {
    fn name(&self) -> &'static str;
    /// Bumped whenever the kind's behaviour changes, so old cache entries stop matching.
    fn version(&self) -> u32;
    /// One line for `pipeline kinds` and error messages.
    fn summary(&self) -> &'static str;
    fn params(&self) -> &'static [ParamSpec];
    fn inputs(&self) -> InputSlots;
    /// Those of [`InputSlots::Fixed`]'s names that an experiment may leave out (the
    /// `evaluate` kind's `test`: without it, every row is evaluated). The stage reads them
    /// with [`StageContext::optional_input`].
    fn optional_inputs(&self) -> &'static [&'static str] {
        &[]
    }
    fn outputs(&self, params: &Params) -> Vec<OutputSpec>;

    /// Checks what the parameter types alone cannot (nested tables, ranges), naming the
    /// parameter actually at fault. Kinds of the domain run their config type's own
    /// validation here, the same function their stage runs before it computes.
    fn check(&self, _params: &Params) -> Result<(), ParamProblem> {
        Ok(())
    }

    /// The command this stage runs that the experiment file itself wrote (the `shell` kind's
    /// `command`), if any. A file may come from anyone: an experiment with such stages
    /// validates only when the registry allows commands, and `status` shows them.
    fn command(&self, _params: &Params) -> Option<String> {
        None
    }

    /// The parameters an output's bytes depend on, when they are fewer than all the stage's
    /// (its inputs and data files always count): a planning hint. `pipeline status` and
    /// `sweep --dry-run` use it to see that a stage reading this output stays cached when only
    /// other parameters change (the features, when only the head changes). Cache keys never
    /// use it: a wrong hint costs a wrong prediction, never a wrong result.
    fn output_depends_on(&self, _output: &str) -> Option<&'static [&'static str]> {
        None
    }

    /// Whether the stage's bytes depend on the device that computes them (a GPU rounds
    /// differently from a CPU): the run's device class then joins its key, so results of
    /// different devices are cached apart and compared within tolerance across devices.
    fn device_dependent(&self, _params: &Params) -> bool {
        false
    }

    /// Files outside the store that the stage reads; their names and bytes join its key.
    fn external_files(
        &self,
        _params: &Params,
        _data_root: &Path,
    ) -> Result<Vec<PathBuf>, StageError> {
        Ok(Vec::new())
    }

    fn run(&self, ctx: &StageContext) -> Result<StageReport, StageError>;
}

/// The kinds an engine knows, by name, and whether it may run commands an experiment file
/// wrote (refused unless the user allowed them).
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn StageKind>>,
    commands_allowed: bool,
    /// The device runs compute on (the CPU unless the binary says otherwise).
    device: crate::device::DeviceRecord,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets experiments with stages that run the file's own commands ([`StageKind::command`])
    /// validate. Only on the user's word: `--allow-shell`, or `status`, which runs nothing.
    pub fn allow_commands(&mut self, allowed: bool) {
        self.commands_allowed = allowed;
    }

    pub fn commands_allowed(&self) -> bool {
        self.commands_allowed
    }

    /// Sets the device the kinds compute on: its class joins the keys of device-dependent
    /// stages, and runs record it.
    pub fn set_device(&mut self, device: crate::device::DeviceRecord) {
        self.device = device;
    }

    pub fn device(&self) -> &crate::device::DeviceRecord {
        &self.device
    }

    /// The device class that joins `kind`'s key with `params`, if its bytes depend on it.
    pub fn device_class_for(&self, kind: &dyn StageKind, params: &Params) -> Option<&str> {
        kind.device_dependent(params)
            .then_some(self.device.class.as_str())
    }

    pub fn add(&mut self, kind: Box<dyn StageKind>) {
        self.kinds.insert(kind.name(), kind);
    }

    pub fn get(&self, name: &str) -> Option<&dyn StageKind> {
        self.kinds.get(name).map(|k| k.as_ref())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &dyn StageKind> + '_ {
        self.kinds.values().map(|k| k.as_ref())
    }
}

/// Whether `path` names something under the data root: relative, without `..`, not empty,
/// so that an experiment file cannot reach outside it. The domain's paths follow the same
/// rule (`stages::validate::data_path`).
pub fn is_under_data_root(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
