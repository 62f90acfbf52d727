//! End to end through the built binary: an experiment whose two classes are not model1's
//! (the quickstart with `load.classes = ["PNEUMONIA", "COVID-19"]`) names every metric, CSV
//! row, caption and headline by its own classes, and its metric names work in
//! `pipeline runs --where/--sort` and in the experiment's `headline`.

mod common;

use std::fs;
use std::path::PathBuf;

use common::Project;

/// The quickstart, its classes renamed, with a headline naming a class's metric.
fn experiment() -> String {
    let quickstart = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../experiments/quickstart.toml"
    ))
    .expect("quickstart.toml");
    let renamed = quickstart.replacen(
        "[stages.load]\nkind = \"load\"\n",
        "[stages.load]\nkind = \"load\"\nclasses = [\"PNEUMONIA\", \"COVID-19\"]\n",
        1,
    );
    assert_ne!(
        renamed, quickstart,
        "the load table moved in quickstart.toml"
    );
    format!(
        "headline = [\"sensitivity\", \"precision_covid_19\"]\n{}",
        renamed
    )
}

fn run_dir(out: &str) -> PathBuf {
    out.lines()
        .rev()
        .map(PathBuf::from)
        .find(|p| p.join("run.toml").is_file())
        .unwrap_or_else(|| panic!("no run directory in:\n{out}"))
}

#[test]
fn a_binary_experiment_of_other_classes_names_everything_by_them() {
    let p = Project::new();
    p.write("exp.toml", &experiment());
    let out = p.ok(&["run", "exp.toml"]);
    let dir = run_dir(&out);
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));

    let metrics = read("metrics.csv");
    for name in [
        "\nn_covid_19,",
        "\nn_pneumonia,",
        "\nprecision_covid_19,",
        "\nf1_covid_19,",
    ] {
        assert!(metrics.contains(name), "{name:?} missing:\n{metrics}");
    }
    assert!(
        !metrics.contains("normal") && !metrics.contains("_covid,"),
        "{metrics}"
    );
    let confusion = read("confusion.csv");
    assert!(confusion.contains("\nPNEUMONIA,PNEUMONIA,"), "{confusion}");
    assert!(confusion.contains("\nCOVID-19,COVID-19,"), "{confusion}");
    assert!(read("classification_report.csv").contains("\nCOVID-19,"));
    let predictions = read("predictions.csv");
    assert!(!predictions.contains("NORMAL"), "{predictions}");
    assert!(predictions.contains(",COVID-19,"), "{predictions}");
    assert!(read("predictions.svg").contains("p = predicted probability of COVID-19"));
    assert!(read("confusion.svg").contains("PNEUMONIA"));

    // The record notes the classes; the headline counts and names them.
    let record: toml::Table = read("run.toml").parse().expect("run.toml");
    let evaluate = record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"].as_str() == Some("evaluate"))
        .expect("evaluate stage");
    assert_eq!(
        evaluate["notes"]["classes"],
        toml::Value::Array(vec!["PNEUMONIA".into(), "COVID-19".into()])
    );
    let n_test = evaluate["metrics"]["n_test"].as_float().expect("n_test");
    let n_covid = evaluate["metrics"]["n_covid_19"].as_float().expect("n");
    let make_up = format!(
        "{n_test} images: {n_covid} COVID-19, {} PNEUMONIA",
        n_test - n_covid
    );
    assert!(out.contains(&make_up), "{make_up:?} not in:\n{out}");
    assert!(out.contains("  COVID-19 precision "), "{out}");
    let html = read("report.html");
    assert!(html.contains(&make_up), "report lacks {make_up:?}");

    // The names work as query keys.
    let csv = p.ok(&[
        "runs",
        "--where",
        "evaluate.precision_covid_19>=0",
        "--sort",
        "evaluate.f1_covid_19:desc",
        "--format",
        "csv",
    ]);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.contains("precision_covid_19")),
        "{csv}"
    );
}
