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

/// How many problems an error shows; the rest are counted. A generated or corrupted file can
/// hold hundreds of thousands, and nobody reads past the first screenful.
pub const SHOWN_PROBLEMS: usize = 50;

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.problems.len() > 1 {
            writeln!(f, "{} problems in {file}:", self.problems.len())?;
        }
        for (i, p) in self.problems.iter().take(SHOWN_PROBLEMS).enumerate() {
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
        if let Some(more) = self.problems.len().checked_sub(SHOWN_PROBLEMS) {
            if more > 0 {
                write!(f, "\n... and {more} more problems")?;
            }
        }
        Ok(())
    }
}

/// A problem found, placed by byte offset until the error is built.
struct Found {
    offset: Option<usize>,
    key: String,
    message: String,
}

/// Collects problems while validating one file.
pub struct Problems<'a> {
    text: &'a str,
    found: Vec<Found>,
}

impl<'a> Problems<'a> {
    pub fn new(text: &'a str) -> Self {
        Problems {
            text,
            found: Vec::new(),
        }
    }

    pub fn add(&mut self, span: Option<Range<usize>>, key: impl Into<String>, message: String) {
        // Positions are computed once for all problems in `into_error`: computing each one
        // from the start of the file made a file with many problems quadratic.
        self.found.push(Found {
            offset: span.map(|s| s.start.min(self.text.len())),
            key: key.into(),
            message,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn into_error(self, file: &Path) -> ExperimentError {
        let mut found = self.found;
        // Report in file order; problems without a place (flags) come last, in the order
        // found (the sort is stable).
        found.sort_by_key(|p| p.offset.unwrap_or(usize::MAX));
        let offsets: Vec<usize> = found.iter().map_while(|p| p.offset).collect();
        let mut positions = line_cols(self.text, &offsets).into_iter();
        let problems = found
            .into_iter()
            .map(|p| Problem {
                position: p.offset.and_then(|_| positions.next()),
                key: p.key,
                message: p.message,
            })
            .collect();
        ExperimentError {
            file: file.to_path_buf(),
            problems,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    line_cols(text, &[offset])[0]
}

/// 1-based line and column (in characters) of each of `offsets`, which must be sorted, in one
/// pass over the text: linear in its length plus the number of offsets, whatever their
/// number and however long the lines (an inline table of 100,000 keys is one line).
pub fn line_cols(text: &str, offsets: &[usize]) -> Vec<(usize, usize)> {
    debug_assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "sorted offsets");
    let mut out = Vec::with_capacity(offsets.len());
    let (mut line, mut col, mut at) = (1, 1, 0);
    for &offset in offsets {
        let offset = offset.min(text.len());
        // An offset inside a character counts from the character's start.
        let end = (0..=offset)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        if end > at {
            for c in text[at..end].chars() {
                if c == '\n' {
                    line += 1;
                    col = 1;
                } else {
                    col += 1;
                }
            }
            at = end;
        }
        out.push((line, col));
    }
    out
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

    /// The naive definition: count from the start of the text for each offset.
    fn naive(text: &str, offset: usize) -> (usize, usize) {
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |t| t.chars().count()) + 1;
        (line, col)
    }

    #[test]
    fn positions_in_one_pass_match_the_naive_definition() {
        let text = "a = 1\n\nbé = { x = 1, ü = 2 }\r\n  c = \"日本\"\nlast";
        let offsets: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let expected: Vec<(usize, usize)> = offsets.iter().map(|&o| naive(text, o)).collect();
        assert_eq!(line_cols(text, &offsets), expected);
        // Repeated offsets, and one past the end.
        assert_eq!(
            line_cols(text, &[6, 6, 999]),
            [(2, 1), (2, 1), naive(text, text.len())]
        );
    }

    #[test]
    fn a_huge_number_of_problems_is_capped_and_placed() {
        // 200,000 problems on one line and 200,000 on their own lines: positions for all of
        // them in one pass (computing each from the start took minutes), 50 shown.
        let one_line: String = (0..200_000).map(|i| format!("k{i:06} = 1, ")).collect();
        let many_lines: String = (0..200_000).map(|i| format!("m{i:06} = 1\n")).collect();
        let text = format!("x = {{ {one_line} }}\n{many_lines}");
        let mut problems = Problems::new(&text);
        // Added out of order, as validation does; a flag's problem has no place.
        problems.add(None, "--set a=1", "flag".into());
        let m_offsets: Vec<usize> = text.match_indices('m').map(|(o, _)| o).collect();
        for (i, offset) in m_offsets.into_iter().enumerate().rev() {
            problems.add(
                Some(offset..offset + 7),
                format!("m{i:06}"),
                "unknown".into(),
            );
        }
        for (i, (offset, _)) in text.match_indices('k').enumerate() {
            problems.add(
                Some(offset..offset + 7),
                format!("k{i:06}"),
                "unknown".into(),
            );
        }
        let err = problems.into_error(Path::new("big.toml"));
        assert_eq!(err.problems.len(), 400_001);
        assert_eq!(err.problems[0].position, Some((1, 7)));
        assert_eq!(err.problems[1].position, Some((1, 7 + 13)));
        assert_eq!(err.problems[200_000].key, "m000000");
        assert_eq!(err.problems[200_000].position, Some((2, 1)));
        assert_eq!(err.problems[399_999].position, Some((200_001, 1)));
        assert_eq!(err.problems[400_000].key, "--set a=1");
        assert_eq!(err.problems[400_000].position, None);
        let shown = err.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 1 + SHOWN_PROBLEMS + 1);
        assert_eq!(lines[0], "400001 problems in big.toml:");
        assert_eq!(lines[1], "big.toml:1:7: k000000: unknown");
        assert_eq!(lines[50], "big.toml:1:644: k000049: unknown");
        assert_eq!(lines[51], "... and 399951 more problems");
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let names = ["epochs", "batch_size", "learning_rate"];
        assert_eq!(closest("epoch", names), Some("epochs"));
        assert_eq!(closest("batchsize", names), Some("batch_size"));
        assert_eq!(closest("zzz", names), None);
    }
}
