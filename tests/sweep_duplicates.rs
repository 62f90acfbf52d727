//! End-to-end test of a grid that lists a value twice (`--grid seed=2,2`): refused with one
//! usage error naming the axis and the value, before anything runs, instead of running two
//! identical points.

mod common;

use std::fs;

use common::Project;

const EXP: &str = r#"
name = "grid"
[stages.score]
kind = "shell"
command = "echo 'score = 1' > metrics.toml"
outputs = ["metrics.toml"]
"#;

#[test]
fn a_grid_value_given_twice_is_a_usage_error_naming_the_axis_and_the_value() {
    let p = Project::new();
    p.write("exp.toml", EXP);
    for (grid, axis, value) in [
        ("seed=2,2", "seed", "2"),
        ("seed=1,3,1", "seed", "1"),
        ("score.command=touch a, touch a", "score.command", "touch a"),
    ] {
        let err = p.rejects(&["sweep", "--allow-shell", "exp.toml", "--grid", grid]);
        assert!(
            err.contains(&format!("`{axis}`")) && err.contains(value) && err.contains("twice"),
            "{grid}:\n{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
    }
    assert!(!p.runs_dir().exists() || fs::read_dir(p.runs_dir()).expect("runs").count() == 0);
}
