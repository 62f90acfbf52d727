//! Skipped tests that do not look like passes: a test that cannot run on this machine (no
//! real chest X-rays, no scikit-learn) calls [`skip`] and returns.
//!
//! libtest cannot mark a test ignored once it runs, so [`skip`] says why on stderr and, when
//! `PIPELINE_SKIP_LOG` names a file (`.ci/run` sets it), appends one line to it:
//! `binary: test<TAB>reason`. `.ci/run` prints those lines at the end, whether the tests
//! passed or failed. `tests/common/mod.rs` writes the same lines for the end-to-end tests.

use std::io::Write;
use std::path::Path;

/// Records that the calling test is skipped because of `reason`; the test then returns.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    eprintln!("skipping {test}: {reason}");
    if let Some(log) = std::env::var_os("PIPELINE_SKIP_LOG") {
        record(Path::new(&log), &test, reason);
    }
}

/// Appends `binary: test<TAB>reason` to `log`, panicking if it cannot: a skip that is not
/// recorded would look like a pass.
fn record(log: &Path, test: &str, reason: &str) {
    // The test binary's name without cargo's hash suffix (`stages-0123abcd` -> `stages`).
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let binary = stem.rsplit_once('-').map_or(&stem[..], |(name, _)| name);
    let line = format!("{binary}: {test}\t{}\n", reason.replace(['\t', '\n'], " "));
    // One `write_all` on a file opened for appending: lines from tests running at the same
    // time, in one binary or several, do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot record a skipped test in {}: {e}", log.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_one_line_naming_the_binary_the_test_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        record(&log, "some::module::a_test", "no data\there");
        record(&log, "another", "no sklearn");
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "stages: some::module::a_test\tno data here",
                "stages: another\tno sklearn"
            ]
        );
        let err = std::panic::catch_unwind(|| record(dir.path(), "t", "r")).unwrap_err();
        let message = err.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("cannot record a skipped test in"),
            "{message}"
        );
    }
}
