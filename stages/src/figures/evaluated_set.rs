//! Which images a confusion matrix or ROC curve was computed on, in the words its titles use.
//!
//! The evaluate stage draws both figures for every set it evaluates: the test split, or an
//! external set (every row of a separately loaded data set). A reader of report.html sees
//! them side by side, so each title says which set it shows and how many images of each class
//! it holds. The set is named by what it is, never by the stage's name in the experiment: a
//! cached result serves every stage doing the same work, whatever its name (report.html's
//! caption under each figure gives the stage).

use crate::metrics::{ConfusionMatrix, CLASS_NAMES};

/// The images an evaluation was computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluatedSet {
    /// The split's test rows (the titles every run had before external sets existed).
    TestSplit,
    /// Every row of an external set, with its number of images of each class (indexed by
    /// label, as [`CLASS_NAMES`]).
    External { counts: [u64; 2] },
}

impl EvaluatedSet {
    /// An external set holding the images counted by `matrix` (true labels on its rows).
    pub fn external(matrix: &ConfusionMatrix) -> Self {
        let [normal, covid] = matrix.rows().map(|row| row.iter().sum());
        EvaluatedSet::External {
            counts: [normal, covid],
        }
    }

    /// "external set: 79 COVID, 105 NORMAL" (positive class first, as the metrics are).
    fn described(counts: [u64; 2]) -> String {
        format!(
            "external set: {} {}, {} {}",
            counts[1], CLASS_NAMES[1], counts[0], CLASS_NAMES[0]
        )
    }

    /// The confusion matrix's title, given how many of the `total` images were classified
    /// right.
    pub(super) fn confusion_title(&self, correct: u64, total: u64) -> String {
        match self {
            EvaluatedSet::TestSplit => {
                format!("Confusion matrix: {correct} of {total} test images correct")
            }
            EvaluatedSet::External { counts } => {
                format!("Confusion matrix, {}", Self::described(*counts))
            }
        }
    }

    /// The line under the confusion matrix's title.
    pub(super) fn confusion_subtitle(&self, correct: u64, total: u64) -> String {
        match self {
            EvaluatedSet::TestSplit => {
                format!("each cell: count and share of all {total} test images")
            }
            EvaluatedSet::External { .. } => {
                format!("{correct} of {total} correct; each cell: count and share of all {total}")
            }
        }
    }

    /// What the confusion matrix's colour bar measures.
    pub(super) fn share_label(&self) -> &'static str {
        match self {
            EvaluatedSet::TestSplit => "share of test images",
            EvaluatedSet::External { .. } => "share of the set's images",
        }
    }

    /// The ROC curve's title.
    pub(super) fn roc_title(&self) -> String {
        match self {
            EvaluatedSet::TestSplit => "ROC curve on the test set".into(),
            EvaluatedSet::External { counts } => {
                format!("ROC curve, {}", Self::described(*counts))
            }
        }
    }

    /// The note drawn when the ROC curve is undefined.
    pub(super) fn one_class_note(&self) -> &'static str {
        match self {
            EvaluatedSet::TestSplit => "ROC undefined: the test set has only one class",
            EvaluatedSet::External { .. } => "ROC undefined: the set has only one class",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_set_is_described_by_its_class_counts() {
        // 79 COVID (3 missed), 105 NORMAL (102 called COVID).
        let matrix = ConfusionMatrix::from_rows([[3, 102], [1, 78]]);
        let set = EvaluatedSet::external(&matrix);
        assert_eq!(set, EvaluatedSet::External { counts: [105, 79] });
        assert_eq!(
            set.confusion_title(81, 184),
            "Confusion matrix, external set: 79 COVID, 105 NORMAL"
        );
        assert_eq!(
            set.confusion_subtitle(81, 184),
            "81 of 184 correct; each cell: count and share of all 184"
        );
        assert_eq!(
            set.roc_title(),
            "ROC curve, external set: 79 COVID, 105 NORMAL"
        );
    }

    #[test]
    fn the_test_split_keeps_its_titles() {
        let set = EvaluatedSet::TestSplit;
        assert_eq!(
            set.confusion_title(54, 55),
            "Confusion matrix: 54 of 55 test images correct"
        );
        assert_eq!(
            set.confusion_subtitle(54, 55),
            "each cell: count and share of all 55 test images"
        );
        assert_eq!(set.roc_title(), "ROC curve on the test set");
    }
}
