//! Experiment files: parsing, `--set` overrides and validation into the [`Experiment`] the
//! engine runs. Raw TOML goes in; what comes out is checked against the registry's kinds.
//!
//! The experiment layer, below everything that runs or stores: the contract of a stage kind
//! and its registry ([`kind`]), the engine's own kinds ([`builtin`]), the stage graph
//! ([`graph`]) and what a sweep is ([`sweep_spec`], read from `[sweep]` by `sweep_table`).
//!
//! ```toml
//! name = "quickstart"
//! description = "What this experiment is for"
//! seed = 42
//!
//! [stages.normalize]
//! kind = "normalize"                      # which stage kind runs
//! inputs = { images = "load.images" }     # input slot = "stage.output"
//! mode = "scale"                          # every other key is a parameter of the kind
//! ```

pub mod builtin;
pub mod graph;
pub mod kind;
pub mod sweep_spec;
mod sweep_table;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::{closest, did_you_mean, ExperimentError, Problem, Problems};
use graph::topological_order;
use kind::{
    is_under_data_root, quoted_list, InputSlots, OutputSpec, ParamDefault, ParamType, Params,
    Registry, StageKind,
};

/// Keys of a stage table that are not parameters.
const STAGE_KEYS: [&str; 3] = ["kind", "inputs", "description"];
/// `slurm`: the job resources `--executor slurm` asks for; read by the binary, never part of
/// a stage's key (where a run executes does not change what it computes).
const TOP_KEYS: [&str; 8] = [
    "name",
    "description",
    "seed",
    "stages",
    "sweep",
    "caveats",
    "headline",
    "slurm",
];

/// A validated experiment, its stages in run order.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file's text, recorded with every run.
    pub text: String,
    pub digest: blake3::Hash,
    pub name: String,
    pub description: String,
    pub seed: i64,
    /// Free-text warnings about what the results can and cannot support (`caveats = [...]`),
    /// shown up front in the summary, `pipeline show` and the report.
    pub caveats: Vec<String>,
    /// The metrics the summary and report lead with (`headline = ["sensitivity", ...]`),
    /// by their name within an evaluate stage; empty means the tool's default choice.
    pub headline: Vec<String>,
    pub stages: Vec<Stage>,
    /// The `--set` flags applied, as given.
    pub overrides: Vec<String>,
    /// The `[sweep]` table: what `pipeline sweep` sweeps when not told on the command line.
    pub sweep: Option<sweep_spec::SweepSpec>,
}

/// One stage with its effective parameters.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub params: Params,
    pub inputs: BTreeMap<String, InputRef>,
    pub outputs: Vec<OutputSpec>,
}

/// Where an input comes from: an output of another stage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputRef {
    pub stage: String,
    pub output: String,
}

impl std::fmt::Display for InputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.stage, self.output)
    }
}

impl Experiment {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The effective parameters of every stage, as one table (`seed` plus `stage.param`).
    pub fn effective_params(&self) -> toml::Table {
        let mut out = toml::Table::new();
        out.insert("seed".into(), toml::Value::Integer(self.seed));
        for stage in &self.stages {
            let table: toml::Table = stage.params.to_table();
            out.insert(stage.name.clone(), toml::Value::Table(table));
        }
        out
    }
}

/// A `--set key=value` flag, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub flag: String,
    /// `None` for a top-level key such as `seed`.
    pub stage: Option<String>,
    pub key: String,
    pub value: toml::Value,
}

impl Override {
    /// Parses `stage.param=value`. The value is read as TOML (`20`, `1e-3`, `true`,
    /// `["a"]`), and taken as a plain string when it is not valid TOML (`mode=scale`).
    pub fn parse(flag: &str) -> Result<Override, String> {
        let (key, raw) = flag
            .split_once('=')
            .ok_or_else(|| format!("--set {flag}: expected `stage.param=value`"))?;
        let key = key.trim();
        let (stage, key) = match key.split_once('.') {
            Some((s, k)) => (Some(s.to_string()), k.to_string()),
            None => (None, key.to_string()),
        };
        if key.is_empty() || stage.as_deref() == Some("") {
            return Err(format!("--set {flag}: expected `stage.param=value`"));
        }
        let value = parse_value(raw.trim());
        Ok(Override {
            flag: flag.to_string(),
            stage,
            key,
            value,
        })
    }
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Reads and validates an experiment file.
pub fn load(
    path: &Path,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Experiment, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExperimentError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            position: None,
            key: String::new(),
            message: format!("cannot read the experiment file: {e}"),
        }],
    })?;
    parse(path, &text, overrides, registry)
}

/// Validates an experiment from its text; `path` is only used in messages and the record.
pub fn parse(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Experiment, ExperimentError> {
    let mut problems = Problems::new(text);
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.message().trim().to_string();
            problems.add(e.span(), "", format!("invalid TOML: {message}"));
            return Err(problems.into_error(path));
        }
    };
    let validator = Validator {
        registry,
        overrides,
    };
    match validator.experiment(doc.get_ref(), text, &mut problems) {
        Some(mut exp) if problems.is_empty() => {
            exp.path = path.to_path_buf();
            Ok(exp)
        }
        _ => Err(problems.into_error(path)),
    }
}

struct Validator<'r> {
    registry: &'r Registry,
    overrides: &'r [Override],
}

/// A stage as read from the file, before its inputs are checked against other stages.
struct RawStage {
    name: String,
    position: usize,
    kind: &'static str,
    description: String,
    params: Params,
    inputs: BTreeMap<String, (InputRef, Range<usize>)>,
    outputs: Vec<OutputSpec>,
}

impl Validator<'_> {
    fn experiment(&self, doc: &DeTable, text: &str, p: &mut Problems) -> Option<Experiment> {
        for (key, _) in doc.iter() {
            if !TOP_KEYS.contains(&key.get_ref().as_ref()) {
                p.add(
                    Some(key.span()),
                    key.get_ref().to_string(),
                    match closest(key.get_ref(), TOP_KEYS) {
                        Some(near) => format!("unknown key; did you mean `{near}`?"),
                        None => {
                            format!("unknown key; an experiment has {}", quoted_list(&TOP_KEYS))
                        }
                    },
                );
            }
        }
        let name = match doc.get("name") {
            Some(v) => string_of(v, "name", p).unwrap_or_default(),
            None => {
                p.add(
                    Some(0..0),
                    "name",
                    "missing: every experiment needs a `name`".into(),
                );
                String::new()
            }
        };
        let description = doc
            .get("description")
            .and_then(|v| string_of(v, "description", p))
            .unwrap_or_default();
        let caveats = doc
            .get("caveats")
            .and_then(|v| strings_of(v, "caveats", p))
            .unwrap_or_default();
        let headline = doc
            .get("headline")
            .and_then(|v| strings_of(v, "headline", p))
            .unwrap_or_default();
        let mut seed = match doc.get("seed") {
            Some(v) => match v.get_ref() {
                DeValue::Integer(_) => match int_of(v) {
                    Some(i) if i < 0 => {
                        p.add(Some(v.span()), "seed", negative_seed(i));
                        0
                    }
                    Some(i) => i,
                    None => {
                        p.add(
                            Some(v.span()),
                            "seed",
                            format!("must be at most {}", i64::MAX),
                        );
                        0
                    }
                },
                other => {
                    type_problem(p, v.span(), "seed", "an integer", other);
                    0
                }
            },
            None => 0,
        };
        for o in self.overrides.iter().filter(|o| o.stage.is_none()) {
            match (o.key.as_str(), &o.value) {
                // Reported here, once: the stages that take the experiment's seed keep the
                // file's, so none of them reports it again on a key of its own.
                ("seed", toml::Value::Integer(i)) if *i < 0 => p.add(
                    None,
                    format!("--set {}", o.flag),
                    format!("`seed` {}", negative_seed(*i)),
                ),
                ("seed", toml::Value::Integer(i)) => seed = *i,
                ("seed", other) => p.add(
                    None,
                    format!("--set {}", o.flag),
                    format!("`seed` must be an integer, not {}", value_type(other)),
                ),
                (key, _) => p.add(
                    None,
                    format!("--set {}", o.flag),
                    format!("`{key}` is not a stage parameter; write `--set STAGE.{key}=VALUE`"),
                ),
            }
        }

        let mut raw_stages = Vec::new();
        let mut all_names = BTreeSet::new();
        match doc.get("stages") {
            None => p.add(
                Some(0..0),
                "stages",
                "missing: add at least one `[stages.NAME]` table".into(),
            ),
            Some(v) => match v.get_ref() {
                DeValue::Table(table) => {
                    for (key, value) in table.iter() {
                        all_names.insert(key.get_ref().to_string());
                        if let Some(stage) = self.stage(key, value, seed, p) {
                            raw_stages.push(stage);
                        }
                    }
                }
                other => type_problem(p, v.span(), "stages", "a table of stages", other),
            },
        }
        raw_stages.sort_by_key(|s| s.position);
        self.check_override_targets(&raw_stages, p);
        self.check_commands_allowed(&raw_stages, p);
        let sweep = doc
            .get("sweep")
            .and_then(|v| sweep_table::read(v, &raw_stages, self.registry, p));
        let stages = self.connect(raw_stages, &all_names, p)?;
        Some(Experiment {
            path: PathBuf::new(),
            text: text.to_string(),
            digest: blake3::hash(text.as_bytes()),
            name,
            description,
            seed,
            caveats,
            headline,
            stages,
            overrides: self.overrides.iter().map(|o| o.flag.clone()).collect(),
            sweep,
        })
    }

    fn stage(
        &self,
        key: &Spanned<std::borrow::Cow<str>>,
        value: &Spanned<DeValue>,
        seed: i64,
        p: &mut Problems,
    ) -> Option<RawStage> {
        let name = key.get_ref().to_string();
        let path = format!("stages.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            p.add(
                Some(key.span()),
                path.clone(),
                "a stage name may hold only letters, digits, `_` and `-`".into(),
            );
        }
        let DeValue::Table(table) = value.get_ref() else {
            type_problem(p, value.span(), &path, "a table", value.get_ref());
            return None;
        };
        let kind = match table.get("kind") {
            None => {
                p.add(
                    Some(key.span()),
                    format!("{path}.kind"),
                    format!(
                        "missing: say which kind of stage this is ({})",
                        self.kind_list()
                    ),
                );
                return None;
            }
            Some(v) => {
                let kind_name = string_of(v, &format!("{path}.kind"), p)?;
                match self.registry.get(&kind_name) {
                    Some(k) => k,
                    None => {
                        p.add(
                            Some(v.span()),
                            format!("{path}.kind"),
                            format!(
                                "unknown stage kind `{kind_name}`{}; known kinds: {}",
                                did_you_mean(&kind_name, self.registry.names()),
                                self.kind_list()
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        let description = table
            .get("description")
            .and_then(|v| string_of(v, &format!("{path}.description"), p))
            .unwrap_or_default();

        let specs = kind.params();
        let mut values = BTreeMap::new();
        // Keys present but invalid: already reported, so not reported again as missing.
        let mut invalid: BTreeSet<String> = BTreeSet::new();
        for (k, v) in table.iter() {
            let k_str: &str = k.get_ref();
            if STAGE_KEYS.contains(&k_str) {
                continue;
            }
            let key_path = format!("{path}.{k_str}");
            let Some(spec) = specs.iter().find(|s| s.name == k_str) else {
                let candidates = specs.iter().map(|s| s.name).chain(STAGE_KEYS);
                let hint = match closest(k_str, candidates) {
                    Some(near) => {
                        // The typo explains the missing parameter; say it once.
                        invalid.insert(near.to_string());
                        format!("; did you mean `{near}`?")
                    }
                    None => format!("; it takes {}", param_list(kind)),
                };
                p.add(
                    Some(k.span()),
                    key_path,
                    format!("unknown parameter for kind `{}`{hint}", kind.name()),
                );
                continue;
            };
            let plain = to_value(v.get_ref());
            match coerce(spec.ty, plain) {
                Ok(value) => {
                    values.insert(k_str.to_string(), value);
                }
                Err(found) => {
                    invalid.insert(k_str.to_string());
                    type_problem_value(p, v.span(), &key_path, spec.ty, &found)
                }
            }
        }
        // Parameters whose value comes from a `--set` flag: their problems name the flag.
        let mut set_by: BTreeMap<&str, &str> = BTreeMap::new();
        for o in self.overrides_for(&name) {
            let flag = format!("--set {}", o.flag);
            match specs.iter().find(|s| s.name == o.key) {
                Some(spec) => match coerce(spec.ty, o.value.clone()) {
                    Ok(value) => {
                        values.insert(o.key.clone(), value);
                        set_by.insert(spec.name, &o.flag);
                    }
                    Err(found) => p.add(
                        None,
                        flag,
                        format!(
                            "`{}` must be {}, not {}",
                            o.key,
                            spec.ty.describe(),
                            value_type(&found)
                        ),
                    ),
                },
                None => p.add(
                    None,
                    flag,
                    format!(
                        "stage `{name}` (kind `{}`) has no parameter `{}`{}",
                        kind.name(),
                        o.key,
                        did_you_mean(&o.key, specs.iter().map(|s| s.name))
                    ),
                ),
            }
        }
        for spec in specs {
            if values.contains_key(spec.name) || invalid.contains(spec.name) {
                continue;
            }
            let default = match spec.default {
                ParamDefault::Required => {
                    p.add(
                        Some(key.span()),
                        format!("{path}.{}", spec.name),
                        format!(
                            "missing required parameter `{}` ({}: {})",
                            spec.name,
                            spec.ty.describe(),
                            spec.help
                        ),
                    );
                    continue;
                }
                ParamDefault::Optional => continue,
                ParamDefault::Int(i) => toml::Value::Integer(i),
                ParamDefault::Float(f) => toml::Value::Float(f),
                ParamDefault::Bool(b) => toml::Value::Boolean(b),
                ParamDefault::Str(s) => toml::Value::String(s.to_string()),
                ParamDefault::ExperimentSeed => toml::Value::Integer(seed),
            };
            values.insert(spec.name.to_string(), default);
        }
        let params = Params::new(values);
        let clean = invalid.is_empty()
            && !specs.iter().any(|s| {
                s.default == ParamDefault::Required && !params.values().contains_key(s.name)
            });
        // A kind's own checks assume well-typed, complete parameters.
        let checked = if clean { kind.check(&params) } else { Ok(()) };
        if let Err(problem) = checked {
            match set_by.get(problem.param.as_str()) {
                Some(flag) => p.add(
                    None,
                    format!("--set {flag}"),
                    format!("`{}` {}", problem.param, problem.message),
                ),
                None => {
                    let span = table
                        .get_key_value(problem.param.as_str())
                        .map(|(_, v)| v.span())
                        .or(Some(key.span()));
                    p.add(span, format!("{path}.{}", problem.param), problem.message);
                }
            }
        }

        let inputs = self.inputs(&path, table, kind, key.span(), p);
        Some(RawStage {
            name,
            position: key.span().start,
            kind: kind.name(),
            description,
            outputs: kind.outputs(&params),
            params,
            inputs,
        })
    }

    fn inputs(
        &self,
        path: &str,
        table: &DeTable,
        kind: &dyn StageKind,
        stage_span: Range<usize>,
        p: &mut Problems,
    ) -> BTreeMap<String, (InputRef, Range<usize>)> {
        let mut inputs = BTreeMap::new();
        if let Some(v) = table.get("inputs") {
            let DeValue::Table(slots) = v.get_ref() else {
                type_problem(
                    p,
                    v.span(),
                    &format!("{path}.inputs"),
                    "a table like { images = \"load.images\" }",
                    v.get_ref(),
                );
                return inputs;
            };
            for (slot, source) in slots.iter() {
                let slot_name = slot.get_ref().to_string();
                let slot_path = format!("{path}.inputs.{slot_name}");
                if let InputSlots::Fixed(names) = kind.inputs() {
                    if !names.contains(&slot_name.as_str()) {
                        p.add(
                            Some(slot.span()),
                            slot_path,
                            format!(
                                "kind `{}` has no input `{slot_name}`{}; its inputs are {}",
                                kind.name(),
                                did_you_mean(&slot_name, names.iter().copied()),
                                if names.is_empty() {
                                    "none".to_string()
                                } else {
                                    quoted_list(names)
                                }
                            ),
                        );
                        continue;
                    }
                }
                let Some(text) = string_of(source, &slot_path, p) else {
                    continue;
                };
                match text.split_once('.') {
                    Some((stage, output)) if !stage.is_empty() && !output.is_empty() => {
                        let input = InputRef {
                            stage: stage.to_string(),
                            output: output.to_string(),
                        };
                        inputs.insert(slot_name, (input, source.span()));
                    }
                    _ => p.add(
                        Some(source.span()),
                        slot_path,
                        format!("`{text}` should name a stage's output: \"STAGE.OUTPUT\""),
                    ),
                }
            }
        }
        if let InputSlots::Fixed(names) = kind.inputs() {
            let optional = kind.optional_inputs();
            for slot in names
                .iter()
                .filter(|n| !inputs.contains_key(**n) && !optional.contains(n))
            {
                p.add(
                    Some(stage_span.clone()),
                    format!("{path}.inputs.{slot}"),
                    format!(
                        "missing input `{slot}`: kind `{}` needs {}",
                        kind.name(),
                        quoted_list(names)
                    ),
                );
            }
        }
        inputs
    }

    /// Checks every input against the stages that exist, then orders the stages.
    /// `all_names` also holds stages that failed validation: inputs naming them are not
    /// reported again.
    fn connect(
        &self,
        raw: Vec<RawStage>,
        all_names: &BTreeSet<String>,
        p: &mut Problems,
    ) -> Option<Vec<Stage>> {
        let names: Vec<String> = raw.iter().map(|s| s.name.clone()).collect();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for stage in &raw {
            for (slot, (input, span)) in &stage.inputs {
                let key = format!("stages.{}.inputs.{slot}", stage.name);
                let Some(producer) = raw.iter().find(|s| s.name == input.stage) else {
                    if all_names.contains(&input.stage) {
                        continue;
                    }
                    p.add(
                        Some(span.clone()),
                        key,
                        format!(
                            "no stage named `{}`{}",
                            input.stage,
                            did_you_mean(&input.stage, names.iter().map(String::as_str))
                        ),
                    );
                    continue;
                };
                if !producer.outputs.iter().any(|o| o.name == input.output) {
                    let outputs: Vec<&str> =
                        producer.outputs.iter().map(|o| o.name.as_str()).collect();
                    p.add(
                        Some(span.clone()),
                        key,
                        format!(
                            "stage `{}` has no output `{}`{}; its outputs are {}",
                            producer.name,
                            input.output,
                            did_you_mean(&input.output, outputs.iter().copied()),
                            quoted_list(&outputs)
                        ),
                    );
                    continue;
                }
                deps.entry(stage.name.clone())
                    .or_default()
                    .insert(input.stage.clone());
            }
        }
        let order = match topological_order(&names, &deps) {
            Ok(order) => order,
            Err(cycle) => {
                let first = raw.iter().find(|s| Some(&s.name) == cycle.first());
                p.add(
                    first.map(|s| s.position..s.position),
                    format!("stages.{}", cycle.first().cloned().unwrap_or_default()),
                    format!("the stages form a cycle: {}", cycle.join(" -> ")),
                );
                return None;
            }
        };
        let mut by_name: BTreeMap<String, RawStage> =
            raw.into_iter().map(|s| (s.name.clone(), s)).collect();
        let stages = order
            .iter()
            .filter_map(|n| by_name.remove(n))
            .map(|s| Stage {
                name: s.name,
                kind: s.kind.to_string(),
                description: s.description,
                params: s.params,
                inputs: s.inputs.into_iter().map(|(k, (r, _))| (k, r)).collect(),
                outputs: s.outputs,
            })
            .collect();
        Some(stages)
    }

    fn check_override_targets(&self, stages: &[RawStage], p: &mut Problems) {
        for o in self.overrides {
            let Some(stage) = &o.stage else { continue };
            if !stages.iter().any(|s| &s.name == stage) {
                p.add(
                    None,
                    format!("--set {}", o.flag),
                    format!(
                        "no stage named `{stage}`{}",
                        did_you_mean(stage, stages.iter().map(|s| s.name.as_str()))
                    ),
                );
            }
        }
    }

    /// An experiment file may come from anyone: the commands it writes itself (the `shell`
    /// kind's) run only when the user allowed them. All of them are named in one problem, so
    /// the user sees exactly what would run before allowing it.
    fn check_commands_allowed(&self, stages: &[RawStage], p: &mut Problems) {
        if self.registry.commands_allowed() {
            return;
        }
        let commands: Vec<String> = stages
            .iter()
            .filter_map(|s| {
                let command = self.registry.get(s.kind)?.command(&s.params)?;
                Some(format!("stages.{}.command = {command:?}", s.name))
            })
            .collect();
        if commands.is_empty() {
            return;
        }
        p.add(
            None,
            "",
            format!(
                "this experiment runs shell commands: {}; they run only when allowed: if you \
                 trust this file, pass --allow-shell (or set PIPELINE_ALLOW_SHELL=1)",
                commands.join("; ")
            ),
        );
    }

    fn overrides_for<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Override> + 'a {
        self.overrides
            .iter()
            .filter(move |o| o.stage.as_deref() == Some(stage))
    }

    fn kind_list(&self) -> String {
        let names: Vec<&str> = self.registry.names().collect();
        quoted_list(&names)
    }
}

fn negative_seed(seed: i64) -> String {
    format!("must not be negative, not {seed}")
}

fn param_list(kind: &dyn StageKind) -> String {
    let names: Vec<&str> = kind.params().iter().map(|s| s.name).collect();
    if names.is_empty() {
        "no parameters".into()
    } else {
        quoted_list(&names)
    }
}

/// Checks a value against a parameter type, converting where TOML's types are narrower than
/// what the user meant (an integer for a float). Returns the value back on a mismatch.
fn coerce(ty: ParamType, value: toml::Value) -> Result<toml::Value, toml::Value> {
    use toml::Value as V;
    match (ty, value) {
        (ParamType::Int, v @ V::Integer(_)) => Ok(v),
        (ParamType::Float, v @ V::Float(_)) => Ok(v),
        (ParamType::Float, V::Integer(i)) => Ok(V::Float(i as f64)),
        (ParamType::Bool, v @ V::Boolean(_)) => Ok(v),
        (ParamType::Str, v @ V::String(_)) => Ok(v),
        (ParamType::DataPath, V::String(s)) if is_under_data_root(&s) => Ok(V::String(s)),
        (ParamType::Choice(options), V::String(s)) if options.contains(&s.as_str()) => {
            Ok(V::String(s))
        }
        (ParamType::StrList, V::Array(items)) if items.iter().all(|i| i.is_str()) => {
            Ok(V::Array(items))
        }
        (ParamType::Any, v) => Ok(v),
        (_, v) => Err(v),
    }
}

fn type_problem_value(
    p: &mut Problems,
    span: Range<usize>,
    key: &str,
    ty: ParamType,
    found: &toml::Value,
) {
    let message = match (ty, found) {
        (ParamType::Choice(options), toml::Value::String(s)) => format!(
            "`{s}` is not one of {}{}",
            quoted_list(options),
            did_you_mean(s, options.iter().copied())
        ),
        _ => format!("must be {}, not {}", ty.describe(), value_type(found)),
    };
    p.add(Some(span), key.to_string(), message);
}

fn type_problem(p: &mut Problems, span: Range<usize>, key: &str, wanted: &str, found: &DeValue) {
    p.add(
        Some(span),
        key.to_string(),
        format!("must be {wanted}, not {}", found.type_str()),
    );
}

fn value_type(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string \"{s}\""),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(_) => "a date-time".into(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn string_of(v: &Spanned<DeValue>, key: &str, p: &mut Problems) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        other => {
            type_problem(p, v.span(), key, "a string", other);
            None
        }
    }
}

/// A list of strings, such as `caveats = ["...", "..."]`; one string is taken as a list of one.
fn strings_of(v: &Spanned<DeValue>, key: &str, p: &mut Problems) -> Option<Vec<String>> {
    match v.get_ref() {
        DeValue::String(s) => Some(vec![s.to_string()]),
        DeValue::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(string_of(item, &format!("{key}[{i}]"), p)?);
            }
            Some(out)
        }
        other => {
            type_problem(p, v.span(), key, "a list of strings", other);
            None
        }
    }
}

fn int_of(v: &Spanned<DeValue>) -> Option<i64> {
    to_value(v.get_ref()).as_integer()
}

/// Converts the spanned parse tree into a plain value.
fn to_value(v: &DeValue) -> toml::Value {
    use toml::Value as V;
    match v {
        DeValue::String(s) => V::String(s.to_string()),
        DeValue::Integer(i) => {
            i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .map(V::Integer)
                // Out of i64's range: keep the text so the type check reports it.
                .unwrap_or_else(|_| V::String(i.as_str().to_string()))
        }
        DeValue::Float(f) => {
            let text = f.as_str().replace('_', "");
            let parsed = match text.as_str() {
                "inf" | "+inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                "nan" | "+nan" | "-nan" => Some(f64::NAN),
                t => t.parse::<f64>().ok(),
            };
            parsed.map(V::Float).unwrap_or(V::String(text))
        }
        DeValue::Boolean(b) => V::Boolean(*b),
        DeValue::Datetime(d) => V::Datetime(*d),
        DeValue::Array(items) => V::Array(items.iter().map(|i| to_value(i.get_ref())).collect()),
        DeValue::Table(t) => V::Table(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_value(v.get_ref())))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
