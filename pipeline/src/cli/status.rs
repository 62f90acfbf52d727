//! `pipeline status EXP`: what `pipeline run` would reuse and what it would compute, each
//! stage explained against the cache.

use std::process::ExitCode;

use pipeline_engine::human::format_seconds;
use pipeline_engine::run::status::{self, PlanState};

use super::ExperimentArgs;
use crate::session::Session;

pub fn status(args: &ExperimentArgs, session: &Session) -> anyhow::Result<ExitCode> {
    let exp = args.load(session)?;
    let ws = session.workspace()?;
    let plans = status::status(&exp, &session.registry, &ws.store, &ws.data_root.value)
        .map_err(|e| ws.hint(e))?;
    let width = plans.iter().map(|s| s.name.len()).max().unwrap_or(5);
    let mut runs = 0;
    let mut estimate = 0.0;
    let mut unknown = 0;
    for s in &plans {
        match &s.state {
            PlanState::Cached => println!("{:<width$}  cached", s.name),
            PlanState::Remote => println!(
                "{:<width$}  on the remote cache: the next run downloads it",
                s.name
            ),
            PlanState::Expected => {
                println!("{:<width$}  cached ({})", s.name, s.reasons.join("; "))
            }
            PlanState::Runs => {
                runs += 1;
                match s.estimate_s {
                    Some(e) => estimate += e,
                    None => unknown += 1,
                }
                println!("{:<width$}  will run: {}", s.name, s.reasons.join("; "));
            }
        }
        if let Some(command) = &s.command {
            println!("{:<width$}  runs the shell command {command:?}", "");
        }
    }
    if plans.iter().any(|s| s.command.is_some()) {
        println!(
            "these shell commands come from {}: `pipeline run` runs them only with --allow-shell",
            exp.path.display()
        );
    }
    if runs == 0 {
        println!("everything is cached: `pipeline run` would recompute nothing");
    } else {
        let known = if unknown > 0 {
            format!(" for the {} with a recorded duration", runs - unknown)
        } else {
            String::new()
        };
        println!(
            "{runs} stage(s) would run: about {}{known}, from earlier computations",
            format_seconds(estimate)
        );
    }
    Ok(ExitCode::SUCCESS)
}
