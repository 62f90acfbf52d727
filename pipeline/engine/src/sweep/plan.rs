//! A sweep's points planned together: for each stage, how many distinct computations the
//! points need, and how many are cached, expected or to run (`pipeline sweep --dry-run`).

use std::collections::BTreeMap;

use crate::run::plan::{PlanState, StagePlan};

/// One stage across the points of a sweep's dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct StageAcross {
    pub stage: String,
    /// Distinct computations among the points (equal plan keys are one computation).
    pub distinct: usize,
    /// How many points have this stage (all, unless some fail validation).
    pub points: usize,
    pub cached: usize,
    /// Cached for predicted inputs (see [`PlanState::Expected`]).
    pub expected: usize,
    pub to_run: usize,
    /// Sum of the estimates of the computations to run, and how many have none.
    pub estimate_s: f64,
    pub unestimated: usize,
    /// Why cached results are expected, when some are.
    pub note: Option<String>,
}

/// Groups the plans of every point by stage: how many distinct computations each stage
/// needs, and how many of them are cached, expected or to run.
pub fn across_points(plans: &[Vec<StagePlan>]) -> Vec<StageAcross> {
    let mut order: Vec<String> = Vec::new();
    let mut by_stage: BTreeMap<String, BTreeMap<String, &StagePlan>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for plan in plans {
        for s in plan {
            if !order.contains(&s.name) {
                order.push(s.name.clone());
            }
            by_stage
                .entry(s.name.clone())
                .or_default()
                .entry(s.plan_key.clone())
                .or_insert(s);
            *counts.entry(s.name.clone()).or_default() += 1;
        }
    }
    order
        .into_iter()
        .map(|stage| {
            let distinct = &by_stage[&stage];
            let mut a = StageAcross {
                stage: stage.clone(),
                distinct: distinct.len(),
                points: counts[&stage],
                cached: 0,
                expected: 0,
                to_run: 0,
                estimate_s: 0.0,
                unestimated: 0,
                note: None,
            };
            for s in distinct.values() {
                match s.state {
                    // A remote result is downloaded, not computed.
                    PlanState::Cached | PlanState::Remote => a.cached += 1,
                    PlanState::Expected => {
                        a.expected += 1;
                        a.note = s.reasons.first().cloned();
                    }
                    PlanState::Runs => {
                        a.to_run += 1;
                        match s.estimate_s {
                            Some(e) => a.estimate_s += e,
                            None => a.unestimated += 1,
                        }
                    }
                }
            }
            a
        })
        .collect()
}
