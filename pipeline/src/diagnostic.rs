//! Errors about an experiment file, each naming the file, line, column and key at fault.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Everything wrong with one experiment file, reported at once.
#[derive(Debug, thiserror::Error)]
pub struct ExperimentError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

/// One problem, positioned in the file where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted key at fault (`stages.train.epochs`), or the `--set` flag.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.problems.len() > 1 {
            writeln!(f, "{} problems in {file}:", self.problems.len())?;
        }
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.position {
                Some((line, col)) => write!(f, "{file}:{line}:{col}: ")?,
                None => write!(f, "{file}: ")?,
            }
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

/// Collects problems while validating one file.
pub struct Problems<'a> {
    text: &'a str,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(text: &'a str) -> Self {
        Problems {
            text,
            found: Vec::new(),
        }
    }

    pub fn add(&mut self, span: Option<Range<usize>>, key: impl Into<String>, message: String) {
        let position = span.map(|s| line_col(self.text, s.start));
        self.found.push(Problem {
            position,
            key: key.into(),
            message,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn into_error(self, file: &Path) -> ExperimentError {
        let mut problems = self.found;
        // Report in file order; problems without a place (flags) come last.
        problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
        ExperimentError {
            file: file.to_path_buf(),
            problems,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, col)
}

/// The candidate closest to a misspelled name, if one is close enough to be a likely typo.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "; did you mean `x`?" or nothing.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(wrong, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        let after_accent = text.rfind(" =").expect("present");
        assert_eq!(line_col(text, after_accent), (2, 3));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let names = ["epochs", "batch_size", "learning_rate"];
        assert_eq!(closest("epoch", names), Some("epochs"));
        assert_eq!(closest("batchsize", names), Some("batch_size"));
        assert_eq!(closest("zzz", names), None);
    }
}
