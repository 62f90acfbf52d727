//! End-to-end tests of `pipeline compare` with `shell` stages that publish a learning curve
//! (`history.csv`), a ROC curve (`roc.csv`) and metrics, as the model's stages do.

mod common;

use std::fs;

use common::Project;

fn curves(auc: f64) -> String {
    format!(
        "printf 'epoch,loss,val_loss\\n1,0.9,1.0\\n2,0.5,0.7\\n3,0.3,0.6\\n' > history.csv; \
         printf 'threshold,fpr,tpr\\ninf,0,0\\n0.5,0.1,0.8\\n0,1,1\\n' > roc.csv; \
         echo 'roc_auc = {auc}' > metrics.toml"
    )
}

fn experiment(name: &str) -> String {
    format!(
        r#"
name = "{name}"
seed = 3
[stages.evaluate]
kind = "shell"
command = "{}"
outputs = ["history.csv", "roc.csv", "metrics.toml"]
"#,
        curves(0.9).replace('\\', "\\\\").replace('"', "\\\"")
    )
}

#[test]
fn runs_side_by_side_with_curves_in_the_terminal_and_one_html_page() {
    let p = Project::trusting_shell();
    p.write("exp.toml", &experiment("cmp"));
    p.ok(&["run", "exp.toml", "--name", "first"]);
    let lower = format!("evaluate.command={}", curves(0.7));
    p.ok(&[
        "run", "exp.toml", "--set", "seed=7", "--set", &lower, "--name", "second",
    ]);

    let out = p.ok(&["compare", "first", "second", "--html", "cmp.html"]);
    assert!(out.contains("parameters that differ"), "{out}");
    let seed_row = out
        .lines()
        .find(|l| l.trim_start().starts_with("seed "))
        .expect("seed row");
    assert!(
        seed_row.contains('3') && seed_row.contains('7'),
        "{seed_row}"
    );
    let auc = out
        .lines()
        .find(|l| l.trim_start().starts_with("evaluate.roc_auc"))
        .expect("metric row");
    assert!(auc.contains("0.9000") && auc.contains("0.7000"), "{auc}");
    assert!(
        out.contains("learning curves: validation loss by epoch"),
        "{out}"
    );
    assert!(out.contains("ROC curves"), "{out}");
    // Both runs have the same curves here: drawn on top of each other, as `*`.
    assert!(out.contains("|*"), "{out}");

    let html = fs::read_to_string(p.path().join("cmp.html")).expect("cmp.html");
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "a loss figure and a ROC figure"
    );
    assert_eq!(
        html.matches("<polyline").count(),
        2 * 2 + 2 + 1,
        "loss and val_loss per run, one ROC per run, chance"
    );
    assert!(html.contains("Parameters that differ") && html.contains("evaluate.roc_auc"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<script")
    );
}

#[test]
fn failed_runs_say_where_and_other_experiments_are_warned_about() {
    let p = Project::trusting_shell();
    p.write("exp.toml", &experiment("cmp"));
    p.write("other.toml", &experiment("other"));
    p.ok(&["run", "exp.toml", "--name", "good"]);
    p.fails(&[
        "run",
        "exp.toml",
        "--set",
        "evaluate.command=exit 4",
        "--name",
        "bad",
    ]);
    p.ok(&["run", "other.toml", "--name", "elsewhere"]);
    let out = p.ok(&["compare", "good", "bad", "elsewhere"]);
    assert!(out.contains("failed at stage `evaluate`"), "{out}");
    assert!(out.contains("exited with status 4"), "{out}");
    assert!(
        out.contains("warning: these runs are of different experiments (cmp, other)"),
        "{out}"
    );

    let err = p.rejects(&["compare", "good"]);
    assert!(err.contains("RUN"), "{err}");
    let err = p.rejects(&["compare", "good", "good"]);
    assert!(err.contains("already named"), "{err}");
    let err = p.rejects(&["compare", "good", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn the_experiments_headline_metrics_come_first() {
    let p = Project::trusting_shell();
    let exp = |headline: &str| {
        format!(
            r#"
name = "order"
{headline}
[stages.evaluate]
kind = "shell"
command = "printf 'alpha = 1\nzeta = 2\n' > metrics.toml"
outputs = ["metrics.toml"]
"#
        )
    };
    let position = |out: &str, metric: &str| {
        out.lines()
            .position(|l| l.trim_start().starts_with(metric))
            .unwrap_or_else(|| panic!("no {metric} row: {out}"))
    };
    p.write("plain.toml", &exp(""));
    p.ok(&["run", "plain.toml", "--name", "p1"]);
    p.ok(&["run", "plain.toml", "--name", "p2", "--set", "seed=2"]);
    let out = p.ok(&["compare", "p1", "p2"]);
    assert!(position(&out, "evaluate.alpha") < position(&out, "evaluate.zeta"));

    p.write("led.toml", &exp("headline = [\"zeta\"]"));
    p.ok(&["run", "led.toml", "--name", "h1"]);
    p.ok(&["run", "led.toml", "--name", "h2", "--set", "seed=2"]);
    let out = p.ok(&["compare", "h1", "h2"]);
    assert!(position(&out, "evaluate.zeta") < position(&out, "evaluate.alpha"));
}
