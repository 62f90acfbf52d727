//! `pipeline kinds`: the stage kinds the registry knows, with their inputs, outputs and
//! parameters.

use pipeline_engine::experiment::kind::{InputSlots, ParamDefault, Params, Registry};

pub fn kinds(registry: &Registry) {
    for (i, kind) in registry.kinds().enumerate() {
        if i > 0 {
            println!();
        }
        println!(
            "{} (version {}): {}",
            kind.name(),
            kind.version(),
            kind.summary()
        );
        let inputs = match kind.inputs() {
            InputSlots::Fixed([]) => "none".to_string(),
            InputSlots::Fixed(names) => names.join(", "),
            InputSlots::Any => {
                "any names the experiment gives (`inputs = { NAME = \"stage.output\" }`)".into()
            }
        };
        println!("  inputs:  {inputs}");
        let outputs = kind.outputs(&Params::default());
        if outputs.is_empty() {
            println!("  outputs: the files its `outputs` parameter names");
        } else {
            let names: Vec<String> = outputs
                .iter()
                .map(|o| {
                    let publish = if o.publish { ", published" } else { "" };
                    format!("{} ({}{publish})", o.name, o.file)
                })
                .collect();
            println!("  outputs: {}", names.join(", "));
        }
        if !kind.params().is_empty() {
            println!("  parameters:");
        }
        for p in kind.params() {
            let default = match p.default {
                ParamDefault::Required => "required".to_string(),
                ParamDefault::Optional => "optional".to_string(),
                ParamDefault::Int(i) => format!("default {i}"),
                ParamDefault::Float(f) => format!("default {f}"),
                ParamDefault::Bool(b) => format!("default {b}"),
                ParamDefault::Str(s) => format!("default \"{s}\""),
                ParamDefault::ExperimentSeed => "default: the experiment's seed".to_string(),
            };
            println!(
                "    {:<18} {} ({default}): {}",
                p.name,
                p.ty.describe(),
                p.help
            );
        }
    }
}
