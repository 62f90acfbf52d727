//! Planning without running: for each stage of an experiment, whether its result is in the
//! cache, and if not, why not, explained against the closest cached result of that stage (not
//! against the last run). `pipeline status` shows one plan; `pipeline sweep --dry-run` plans
//! every point and compares their plan keys to tell shared stages from distinct ones.
//!
//! A stage whose inputs are all cached has its real cache key. A stage downstream of one that
//! must run cannot have one (its key holds the digests of outputs not computed yet), so it gets
//! a plan key instead: the hash of what its key would be made of, with the upstream stages'
//! plan keys in place of the missing digests. Two points with equal plan keys do the same work
//! once. An output whose kind declares that it depends on fewer parameters than the whole stage
//! ([`StageKind::output_depends_on`]), such as the model's frozen `base`, which the head's
//! parameters leave alone, is predicted from a cached result of its stage at the same values
//! of those parameters, so a stage reading it (the features) is seen to stay cached. Such a
//! prediction is marked as one: cache keys never use the hint, and a run computes and checks
//! the real digests.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::error::RunError;
use super::fingerprint::{stage_key, KeyParts};
use super::inputs::{external_data, External};
use super::store::Store;
use crate::experiment::kind::{Registry, StageKind};
use crate::experiment::{Experiment, Stage};
use crate::hash::FieldHasher;
use crate::human::brief;
use crate::runs::index::RunSummary;
use crate::store::cache::Lookup;
use crate::store::manifest::Manifest;

/// What will happen to a stage.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanState {
    /// Its result is cached.
    Cached,
    /// Its result is cached for the inputs predicted from upstream stages that will run:
    /// reused if they reproduce those bytes, as their kinds declare they will.
    Expected,
    /// Not in the local store, but in the remote cache: the next run downloads it.
    Remote,
    /// It will be computed.
    Runs,
}

/// One stage's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub name: String,
    pub kind: String,
    /// The cache key, when every input is known or predicted.
    pub key: Option<String>,
    /// Equal in two plans exactly when the stage does the same work on the same inputs: the
    /// cache key where there is one.
    pub plan_key: String,
    pub state: PlanState,
    /// Why the stage runs, explained against the cache; for [`PlanState::Expected`], on what
    /// grounds a cached result is expected to serve.
    pub reasons: Vec<String>,
    /// The command from the experiment file the stage runs (`shell` stages).
    pub command: Option<String>,
    /// Seconds its computation is expected to take, from the closest cached result or the
    /// recorded runs; `None` when nothing like it was ever computed.
    pub estimate_s: Option<f64>,
}

/// One output of a planned stage, as later stages see it.
#[derive(Debug, Clone)]
struct OutputState {
    /// The digest, when known (cached) or predicted.
    digest: Option<blake3::Hash>,
    /// Stands for the output in plan keys: its digest when known, else a hash of the
    /// producing stage's plan key and the output's name.
    plan: blake3::Hash,
    /// Why the digest is predicted rather than known.
    predicted: Option<String>,
}

/// Plans experiments against one store; plans of many experiments (a sweep's points) share
/// what it has read: manifests, earlier results, hashed data files.
pub struct Planner<'a> {
    registry: &'a Registry,
    store: &'a Store,
    data_root: &'a Path,
    /// Check cached files' bytes (`status`), or trust manifests (a sweep's dry run, where
    /// the run checks them anyway).
    check_files: bool,
    /// Keys of earlier results by stage name, newest run first.
    by_stage: BTreeMap<Arc<str>, Vec<Arc<str>>>,
    /// Keys of earlier results by kind.
    by_kind: BTreeMap<Arc<str>, Vec<Arc<str>>>,
    /// Seconds of earlier computations by stage name (results not taken from the cache).
    durations: BTreeMap<Arc<str>, Vec<f64>>,
    manifests: RefCell<HashMap<String, Option<Manifest>>>,
    lookups: RefCell<HashMap<String, Found>>,
    externals: RefCell<HashMap<String, Option<std::rc::Rc<External>>>>,
}

#[derive(Debug, Clone)]
enum Found {
    Hit(Box<Manifest>),
    /// In the remote cache only (its manifest read, nothing downloaded).
    Remote(Box<Manifest>),
    Damaged(Vec<String>),
    Miss,
}

impl<'a> Planner<'a> {
    /// A planner over `store`, learning earlier results from `runs` (newest first).
    pub fn new(
        registry: &'a Registry,
        store: &'a Store,
        data_root: &'a Path,
        runs: &[RunSummary],
        check_files: bool,
    ) -> Planner<'a> {
        let mut by_stage: BTreeMap<Arc<str>, Vec<Arc<str>>> = BTreeMap::new();
        let mut by_kind: BTreeMap<Arc<str>, Vec<Arc<str>>> = BTreeMap::new();
        let mut durations: BTreeMap<Arc<str>, Vec<f64>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for run in runs {
            for s in &run.stages {
                if s.cache != crate::runs::record::CacheUse::Hit {
                    durations
                        .entry(s.name.clone())
                        .or_default()
                        .push(s.duration_s);
                }
                if seen.insert((s.name.clone(), s.key.clone())) {
                    by_stage
                        .entry(s.name.clone())
                        .or_default()
                        .push(s.key.clone());
                    by_kind
                        .entry(s.kind.clone())
                        .or_default()
                        .push(s.key.clone());
                }
            }
        }
        Planner {
            registry,
            store,
            data_root,
            check_files,
            by_stage,
            by_kind,
            durations,
            manifests: RefCell::new(HashMap::new()),
            lookups: RefCell::new(HashMap::new()),
            externals: RefCell::new(HashMap::new()),
        }
    }

    /// Plans every stage of `exp`, in run order.
    pub fn plan(&self, exp: &Experiment) -> Result<Vec<StagePlan>, RunError> {
        let mut outputs: BTreeMap<String, OutputState> = BTreeMap::new();
        let mut plans = Vec::new();
        for stage in &exp.stages {
            let Some(kind) = self.registry.get(&stage.kind) else {
                continue;
            };
            let plan = self.stage(stage, kind, &mut outputs)?;
            plans.push(plan);
        }
        Ok(plans)
    }

    fn stage(
        &self,
        stage: &Stage,
        kind: &dyn StageKind,
        outputs: &mut BTreeMap<String, OutputState>,
    ) -> Result<StagePlan, RunError> {
        let external = self.external(stage, kind)?;
        let inputs: BTreeMap<String, Option<OutputState>> = stage
            .inputs
            .iter()
            .map(|(slot, from)| (slot.clone(), outputs.get(&from.to_string()).cloned()))
            .collect();
        let digests: Option<BTreeMap<String, blake3::Hash>> = inputs
            .iter()
            .map(|(slot, o)| o.as_ref().and_then(|o| o.digest).map(|d| (slot.clone(), d)))
            .collect();
        let predicted: Vec<String> = inputs
            .values()
            .flatten()
            .filter_map(|o| o.predicted.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let output_files: Vec<(String, String)> = stage
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.file.clone()))
            .collect();
        let key = digests.as_ref().map(|d| {
            stage_key(&KeyParts {
                kind: kind.name(),
                kind_version: kind.version(),
                params: &stage.params,
                inputs: d,
                external: external.as_ref().map(|e| e.digest),
                outputs: &output_files,
                device: self.registry.device_class_for(kind, &stage.params),
            })
        });
        let plan_key = match key {
            Some(k) => k,
            None => {
                let mut h = FieldHasher::new("pipeline.plan-key");
                h.str(kind.name()).u64(u64::from(kind.version()));
                h.value(&toml::Value::Table(stage.params.to_table()));
                h.u64(inputs.len() as u64);
                for (slot, o) in &inputs {
                    h.str(slot);
                    match o {
                        Some(o) => h.digest(&o.plan),
                        None => h.str("missing"),
                    };
                }
                match &external {
                    Some(e) => h.str("external").digest(&e.digest),
                    None => h.str("no-external"),
                };
                for (name, file) in &output_files {
                    h.str(name).str(file);
                }
                h.finish()
            }
        };
        let found = match key {
            Some(k) => self.lookup(&k.to_hex())?,
            None => Found::Miss,
        };
        let closest = self.closest(stage, kind, &inputs, external.as_deref());
        let estimate_s = closest
            .as_ref()
            .map(|(m, _)| m.duration_s)
            .or_else(|| median(self.durations.get(stage.name.as_str())));
        let (state, reasons) = match &found {
            Found::Hit(_) if predicted.is_empty() => (PlanState::Cached, Vec::new()),
            Found::Hit(_) => (PlanState::Expected, predicted.clone()),
            Found::Remote(_) => (
                PlanState::Remote,
                vec!["on the remote cache: the next run downloads it".into()],
            ),
            Found::Damaged(problems) => (
                PlanState::Runs,
                vec![format!(
                    "the cached result was damaged ({})",
                    problems.join("; ")
                )],
            ),
            Found::Miss => (
                PlanState::Runs,
                self.reasons(stage, &inputs, closest.as_ref().map(|(_, d)| d)),
            ),
        };
        // What later stages read from this one.
        for spec in &stage.outputs {
            let name = format!("{}.{}", stage.name, spec.name);
            let state = match &found {
                Found::Hit(m) | Found::Remote(m) => {
                    let digest = m
                        .file(&spec.name)
                        .and_then(|f| blake3::Hash::from_hex(&f.blake3).ok());
                    OutputState {
                        digest,
                        plan: digest.unwrap_or_else(|| derived(&plan_key, &spec.name)),
                        predicted: if predicted.is_empty() {
                            None
                        } else {
                            Some(predicted.join("; "))
                        },
                    }
                }
                _ => match self.predict(stage, kind, &spec.name, &inputs, external.as_deref()) {
                    Some((digest, why)) => OutputState {
                        digest: Some(digest),
                        plan: digest,
                        predicted: Some(why),
                    },
                    None => OutputState {
                        digest: None,
                        plan: derived(&plan_key, &spec.name),
                        predicted: None,
                    },
                },
            };
            outputs.insert(name, state);
        }
        Ok(StagePlan {
            name: stage.name.clone(),
            kind: stage.kind.clone(),
            key: key.map(|k| k.to_hex().to_string()),
            plan_key: plan_key.to_hex().to_string(),
            state,
            reasons,
            command: kind.command(&stage.params),
            estimate_s,
        })
    }

    /// Why a stage that has no cached result runs: its inputs that must be computed first,
    /// and how it differs from the closest cached result of the same stage.
    fn reasons(
        &self,
        stage: &Stage,
        inputs: &BTreeMap<String, Option<OutputState>>,
        differences: Option<&Vec<String>>,
    ) -> Vec<String> {
        let mut reasons = Vec::new();
        for (slot, from) in &stage.inputs {
            let known = inputs
                .get(slot)
                .and_then(|o| o.as_ref())
                .is_some_and(|o| o.digest.is_some());
            if !known {
                reasons.push(format!(
                    "input `{slot}` comes from `{}`, which must run first",
                    from.stage
                ));
            }
        }
        match differences {
            Some(d) => reasons.extend(d.iter().cloned()),
            None => {
                let earlier = self.by_stage.contains_key(stage.name.as_str());
                if reasons.is_empty() {
                    reasons.push(if earlier {
                        "its earlier result is no longer in the cache".into()
                    } else {
                        "no earlier result".into()
                    });
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("its key changed (a different version of pipeline?)".into());
        }
        reasons
    }

    /// The cached result of this stage (or, failing that, of its kind) that differs least
    /// from what the stage would compute now, with those differences.
    fn closest(
        &self,
        stage: &Stage,
        kind: &dyn StageKind,
        inputs: &BTreeMap<String, Option<OutputState>>,
        external: Option<&External>,
    ) -> Option<(Manifest, Vec<String>)> {
        let keys = self
            .by_stage
            .get(stage.name.as_str())
            .or_else(|| self.by_kind.get(kind.name()))?;
        let mut best: Option<(Manifest, Vec<String>)> = None;
        for key in keys {
            let Some(m) = self.manifest(key) else {
                continue;
            };
            if m.kind != kind.name() {
                continue;
            }
            let d = differences(&m, stage, kind, inputs, external);
            let better = match &best {
                None => true,
                Some((b, bd)) => {
                    d.len() < bd.len() || (d.len() == bd.len() && m.created > b.created)
                }
            };
            if better {
                best = Some((m, d));
            }
        }
        best
    }

    /// An output's digest predicted from a cached result of the stage that agrees on every
    /// parameter the output depends on (and on inputs and data files), when the kind declares
    /// which those are.
    fn predict(
        &self,
        stage: &Stage,
        kind: &dyn StageKind,
        output: &str,
        inputs: &BTreeMap<String, Option<OutputState>>,
        external: Option<&External>,
    ) -> Option<(blake3::Hash, String)> {
        let depends_on = kind.output_depends_on(output)?;
        let digests: BTreeMap<&String, String> = inputs
            .iter()
            .map(|(slot, o)| Some((slot, o.as_ref()?.digest?.to_hex().to_string())))
            .collect::<Option<_>>()?;
        let keys = self
            .by_stage
            .get(stage.name.as_str())
            .or_else(|| self.by_kind.get(kind.name()))?;
        for key in keys {
            let Some(m) = self.manifest(key) else {
                continue;
            };
            let same_kind = m.kind == kind.name() && m.kind_version == kind.version();
            let same_inputs = m.inputs.len() == digests.len()
                && digests
                    .iter()
                    .all(|(slot, d)| m.inputs.get(slot.as_str()) == Some(d));
            let same_data = match external {
                Some(e) => {
                    m.external.len() == e.files.len()
                        && e.files.iter().all(|f| {
                            m.external.get(&f.name).map(String::as_str)
                                == Some(f.digest.to_hex().as_str())
                        })
                }
                None => m.external.is_empty(),
            };
            let same_params = depends_on
                .iter()
                .all(|p| m.params.get(*p) == stage.params.get(p));
            if !(same_kind && same_inputs && same_data && same_params) {
                continue;
            }
            let digest = m
                .file(output)
                .and_then(|f| blake3::Hash::from_hex(&f.blake3).ok())?;
            return Some((
                digest,
                format!(
                    "expected: `{}.{output}` depends only on {}, as in a cached result",
                    stage.name,
                    depends_on
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        None
    }

    fn manifest(&self, key: &str) -> Option<Manifest> {
        if let Some(m) = self.manifests.borrow().get(key) {
            return m.clone();
        }
        let m = self
            .store
            .cache
            .read_entry(key)
            .ok()
            .flatten()
            .map(|e| e.manifest);
        self.manifests
            .borrow_mut()
            .insert(key.to_string(), m.clone());
        m
    }

    fn lookup(&self, key: &str) -> Result<Found, RunError> {
        if let Some(f) = self.lookups.borrow().get(key) {
            return Ok(f.clone());
        }
        let found = if self.check_files {
            // Inspected, not looked up: a plan must not change the store.
            match self.store.cache.inspect(key)? {
                Lookup::Hit(entry) => Found::Hit(Box::new(entry.manifest)),
                Lookup::Damaged { problems } => Found::Damaged(problems),
                Lookup::Miss => Found::Miss,
            }
        } else {
            match self.store.cache.read_entry(key)? {
                Some(entry) => Found::Hit(Box::new(entry.manifest)),
                None => Found::Miss,
            }
        };
        // An unreachable remote counts as not having it: a plan never fails on the network.
        let found = match (found, &self.store.remote) {
            (Found::Miss, Some(remote)) => match remote.manifest(key) {
                Ok(Some((_, manifest))) => Found::Remote(Box::new(manifest)),
                _ => Found::Miss,
            },
            (found, _) => found,
        };
        self.lookups
            .borrow_mut()
            .insert(key.to_string(), found.clone());
        Ok(found)
    }

    /// The stage's data files, hashed once per distinct kind and parameters.
    fn external(
        &self,
        stage: &Stage,
        kind: &dyn StageKind,
    ) -> Result<Option<std::rc::Rc<External>>, RunError> {
        let memo = format!(
            "{}\u{0}{}",
            kind.name(),
            toml::Value::Table(stage.params.to_table())
        );
        if let Some(e) = self.externals.borrow().get(&memo) {
            return Ok(e.clone());
        }
        let checked = self.store.cache.blobs().checked();
        let e = external_data(stage, kind, self.data_root, checked)?.map(std::rc::Rc::new);
        self.externals.borrow_mut().insert(memo, e.clone());
        Ok(e)
    }
}

/// The plan key of a stage's output whose digest is unknown.
fn derived(plan_key: &blake3::Hash, output: &str) -> blake3::Hash {
    let mut h = FieldHasher::new("pipeline.plan-output");
    h.digest(plan_key).str(output);
    h.finish()
}

fn median(values: Option<&Vec<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values?.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// How the stage now differs from a cached result of its kind: kind version, parameters,
/// inputs whose digest is known and differs, data files.
fn differences(
    m: &Manifest,
    stage: &Stage,
    kind: &dyn StageKind,
    inputs: &BTreeMap<String, Option<OutputState>>,
    external: Option<&External>,
) -> Vec<String> {
    let mut out = Vec::new();
    if m.kind_version != kind.version() {
        out.push(format!(
            "kind `{}` changed its behaviour (version {} -> {})",
            kind.name(),
            m.kind_version,
            kind.version()
        ));
    }
    let now = stage.params.values();
    for (name, value) in now {
        match m.params.get(name) {
            Some(old) if old == value => {}
            Some(old) => out.push(format!("parameter `{name}` changed: {old} -> {value}")),
            None => out.push(format!("parameter `{name}` set to {value}")),
        }
    }
    for (name, old) in &m.params {
        if !now.contains_key(name) {
            out.push(format!("parameter `{name}` removed (was {old})"));
        }
    }
    for (slot, from) in &stage.inputs {
        let Some(digest) = inputs
            .get(slot)
            .and_then(|o| o.as_ref())
            .and_then(|o| o.digest)
        else {
            continue;
        };
        if m.inputs.get(slot).map(String::as_str) != Some(digest.to_hex().as_str()) {
            out.push(format!("input `{slot}` ({from}) changed"));
        }
    }
    let data = data_change(&m.external, external);
    out.extend(data);
    out
}

/// How a stage's data files differ from those a cached result read, naming them.
pub(crate) fn data_change(
    old: &BTreeMap<String, String>,
    now: Option<&External>,
) -> Option<String> {
    let empty = Vec::new();
    let files = now.map_or(&empty, |e| &e.files);
    let mut added = Vec::new();
    let mut modified = Vec::new();
    for f in files {
        match old.get(&f.name) {
            None => added.push(f.name.as_str()),
            Some(d) if d.as_str() != f.digest.to_hex().as_str() => modified.push(f.name.as_str()),
            Some(_) => {}
        }
    }
    let removed: Vec<&str> = old
        .keys()
        .filter(|k| !files.iter().any(|f| &f.name == *k))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    for (label, names) in [
        ("modified", modified),
        ("added", added),
        ("removed", removed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{} {label} ({})", names.len(), brief(&names)));
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("its data files changed: {}", parts.join(", ")))
    }
}
