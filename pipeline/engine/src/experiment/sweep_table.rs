//! The experiment file's `[sweep]` table: what `pipeline sweep EXP` sweeps when the command
//! line names no axes. Every problem is placed on its key, as the stages' are.
//!
//! ```toml
//! [sweep]
//! metric = "evaluate.roc_auc:max"        # the goal (default: the first headline metric, max)
//! jobs = 2                               # points run at a time
//! grid.train.learning_rate = [1e-4, 3e-4, 1e-3]
//! grid.model.units = [32, 64, 128, 256]
//! # or a seeded random search: grid values become choices, ranges are drawn from
//! random = { count = 20, seed = 1 }
//! ranges.train.learning_rate = { min = 1e-4, max = 1e-2, log = true }
//! ```

use std::ops::Range as Span;

use toml::de::DeValue;
use toml::Spanned;

use super::sweep_spec::{Axis, Goal, Random, Range, SweepSpec};
use super::{coerce, int_of, to_value, type_problem, type_problem_value, RawStage};
use crate::diagnostic::{closest, did_you_mean, Problems};
use crate::experiment::kind::{quoted_list, Registry};

const SWEEP_KEYS: [&str; 5] = ["metric", "jobs", "grid", "ranges", "random"];

/// Reads `[sweep]`, checking each swept key against the experiment's stages and each value
/// against the parameter's type.
pub(super) fn read(
    value: &Spanned<DeValue>,
    stages: &[RawStage],
    registry: &Registry,
    p: &mut Problems,
) -> Option<SweepSpec> {
    let DeValue::Table(table) = value.get_ref() else {
        type_problem(p, value.span(), "sweep", "a table", value.get_ref());
        return None;
    };
    let mut spec = SweepSpec::default();
    for (key, v) in table.iter() {
        let k: &str = key.get_ref();
        let path = format!("sweep.{k}");
        match k {
            "metric" => match v.get_ref() {
                DeValue::String(s) => match Goal::parse(s) {
                    Ok(goal) => spec.metric = Some(goal),
                    Err(e) => p.add(Some(v.span()), path, e),
                },
                other => type_problem(
                    p,
                    v.span(),
                    &path,
                    "a string like \"evaluate.roc_auc:max\"",
                    other,
                ),
            },
            "jobs" => match int_of(v) {
                Some(n) if n >= 1 => spec.jobs = Some(n as usize),
                _ => p.add(
                    Some(v.span()),
                    path,
                    "must be a whole number of points to run at a time, at least 1".into(),
                ),
            },
            "random" => spec.random = random(v, &path, p),
            "grid" => {
                for (key, values, span) in entries(v, &path, p) {
                    let Some(values) = grid_values(&key, values, span, stages, registry, p) else {
                        continue;
                    };
                    spec.grid.push(Axis { key, values });
                }
            }
            "ranges" => {
                for (key, bounds, span) in entries(v, &path, p) {
                    if let Some(range) = range(&key, bounds, span, stages, registry, p) {
                        spec.ranges.push(range);
                    }
                }
            }
            other => p.add(
                Some(key.span()),
                path,
                match closest(other, SWEEP_KEYS) {
                    Some(near) => format!("unknown key; did you mean `{near}`?"),
                    None => format!("unknown key; [sweep] has {}", quoted_list(&SWEEP_KEYS)),
                },
            ),
        }
    }
    if spec.random.is_none() && !spec.ranges.is_empty() {
        let span = table.get("ranges").map(|v| v.span());
        p.add(
            span,
            "sweep.ranges",
            "ranges are drawn from by a random search: add `random = { count = N, seed = S }`"
                .into(),
        );
    }
    Some(spec)
}

/// The swept entries of `grid` or `ranges`: `seed = ...` at the top, or `STAGE.PARAM = ...`
/// (a table per stage, as TOML's dotted keys make them). A value that is itself a table with
/// `min` is a range, not a stage.
fn entries<'a>(
    v: &'a Spanned<DeValue<'a>>,
    path: &str,
    p: &mut Problems,
) -> Vec<(String, &'a Spanned<DeValue<'a>>, Span<usize>)> {
    let DeValue::Table(table) = v.get_ref() else {
        type_problem(
            p,
            v.span(),
            path,
            "a table of STAGE.PARAM = values",
            v.get_ref(),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (stage, inner) in table.iter() {
        let name: &str = stage.get_ref();
        match inner.get_ref() {
            DeValue::Table(params) if !params.contains_key("min") => {
                for (param, values) in params.iter() {
                    let param: &str = param.get_ref();
                    out.push((format!("{name}.{param}"), values, values.span()));
                }
            }
            _ => out.push((name.to_string(), inner, inner.span())),
        }
    }
    out
}

/// Finds the parameter a swept key names, placing a problem on the key when there is none.
fn param_type(
    key: &str,
    span: &Span<usize>,
    stages: &[RawStage],
    registry: &Registry,
    p: &mut Problems,
) -> Option<crate::experiment::kind::ParamType> {
    let path = format!("sweep: `{key}`");
    if key == "seed" {
        return Some(crate::experiment::kind::ParamType::Int);
    }
    let Some((stage_name, param)) = key.split_once('.') else {
        p.add(
            Some(span.clone()),
            path,
            "should be STAGE.PARAM (or `seed`, the experiment's seed)".into(),
        );
        return None;
    };
    let Some(stage) = stages.iter().find(|s| s.name == stage_name) else {
        p.add(
            Some(span.clone()),
            path,
            format!(
                "no stage named `{stage_name}`{}",
                did_you_mean(stage_name, stages.iter().map(|s| s.name.as_str()))
            ),
        );
        return None;
    };
    let kind = registry.get(stage.kind)?;
    match kind.params().iter().find(|s| s.name == param) {
        Some(spec) => Some(spec.ty),
        None => {
            p.add(
                Some(span.clone()),
                path,
                format!(
                    "stage `{stage_name}` (kind `{}`) has no parameter `{param}`{}",
                    kind.name(),
                    did_you_mean(param, kind.params().iter().map(|s| s.name))
                ),
            );
            None
        }
    }
}

fn grid_values(
    key: &str,
    values: &Spanned<DeValue>,
    span: Span<usize>,
    stages: &[RawStage],
    registry: &Registry,
    p: &mut Problems,
) -> Option<Vec<toml::Value>> {
    let ty = param_type(key, &span, stages, registry, p)?;
    let path = format!("sweep.grid.{key}");
    let DeValue::Array(items) = values.get_ref() else {
        type_problem(
            p,
            span,
            &path,
            "an array of the values to try",
            values.get_ref(),
        );
        return None;
    };
    if items.is_empty() {
        p.add(Some(span), path, "has no values to try".into());
        return None;
    }
    let mut out = Vec::new();
    for item in items.iter() {
        match coerce(ty, to_value(item.get_ref())) {
            Ok(v) => out.push(v),
            Err(found) => {
                type_problem_value(p, item.span(), &path, ty, &found);
                return None;
            }
        }
    }
    Some(out)
}

fn range(
    key: &str,
    bounds: &Spanned<DeValue>,
    span: Span<usize>,
    stages: &[RawStage],
    registry: &Registry,
    p: &mut Problems,
) -> Option<Range> {
    let ty = param_type(key, &span, stages, registry, p)?;
    let path = format!("sweep.ranges.{key}");
    let DeValue::Table(t) = bounds.get_ref() else {
        type_problem(
            p,
            span,
            &path,
            "a table { min = ..., max = ..., log = true }",
            bounds.get_ref(),
        );
        return None;
    };
    if !matches!(
        ty,
        crate::experiment::kind::ParamType::Int | crate::experiment::kind::ParamType::Float
    ) {
        p.add(
            Some(span),
            path,
            format!(
                "a range needs a numeric parameter; `{key}` is {}",
                ty.describe()
            ),
        );
        return None;
    }
    let number = |name: &str, p: &mut Problems| -> Option<(f64, bool)> {
        let Some(v) = t.get(name) else {
            p.add(
                Some(bounds.span()),
                format!("{path}.{name}"),
                "missing".into(),
            );
            return None;
        };
        match to_value(v.get_ref()) {
            toml::Value::Integer(i) => Some((i as f64, true)),
            toml::Value::Float(f) => Some((f, false)),
            _ => {
                type_problem(
                    p,
                    v.span(),
                    &format!("{path}.{name}"),
                    "a number",
                    v.get_ref(),
                );
                None
            }
        }
    };
    let min = number("min", p);
    let max = number("max", p);
    let log = match t.get("log").map(|v| (v, v.get_ref())) {
        None => false,
        Some((_, DeValue::Boolean(b))) => *b,
        Some((v, other)) => {
            type_problem(p, v.span(), &format!("{path}.log"), "true or false", other);
            false
        }
    };
    for (k, v) in t.iter() {
        let k: &str = k.get_ref();
        if !["min", "max", "log"].contains(&k) {
            p.add(
                Some(v.span()),
                format!("{path}.{k}"),
                "unknown key; a range has `min`, `max` and `log`".into(),
            );
        }
    }
    let ((min, min_int), (max, max_int)) = (min?, max?);
    let range = Range {
        key: key.to_string(),
        min,
        max,
        log,
        // An integer parameter is drawn as integers whatever the bounds look like.
        integer: ty == crate::experiment::kind::ParamType::Int || (min_int && max_int),
    };
    if let Err(e) = range.check() {
        p.add(Some(bounds.span()), path, e);
        return None;
    }
    Some(range)
}

fn random(v: &Spanned<DeValue>, path: &str, p: &mut Problems) -> Option<Random> {
    let DeValue::Table(t) = v.get_ref() else {
        type_problem(
            p,
            v.span(),
            path,
            "a table { count = N, seed = S }",
            v.get_ref(),
        );
        return None;
    };
    let field = |name: &str, p: &mut Problems| -> Option<i64> {
        match t.get(name) {
            Some(x) => match int_of(x) {
                Some(i) if i >= 0 => Some(i),
                _ => {
                    p.add(
                        Some(x.span()),
                        format!("{path}.{name}"),
                        "must be a whole number, 0 or more".into(),
                    );
                    None
                }
            },
            None => {
                p.add(Some(v.span()), format!("{path}.{name}"), "missing".into());
                None
            }
        }
    };
    let count = field("count", p);
    let seed = field("seed", p);
    for (k, x) in t.iter() {
        let k: &str = k.get_ref();
        if !["count", "seed"].contains(&k) {
            p.add(
                Some(x.span()),
                format!("{path}.{k}"),
                "unknown key; `random` has `count` and `seed`".into(),
            );
        }
    }
    let count = count?;
    if count == 0 {
        p.add(
            Some(v.span()),
            format!("{path}.count"),
            "must be at least 1".into(),
        );
        return None;
    }
    Some(Random {
        count: count as usize,
        seed: seed? as u64,
    })
}
