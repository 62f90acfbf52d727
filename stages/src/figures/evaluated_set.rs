//! Which images a confusion matrix or ROC curve was computed on, in the words its titles use.
//!
//! The evaluate stage draws both figures for every set it evaluates: the test split, or an
//! external set (every row of a separately loaded data set). A reader of report.html sees
//! them side by side, so each title says which set it shows and how many images of each class
//! it holds. The set is named by what it is, never by the stage's name in the experiment: a
//! cached result serves every stage doing the same work, whatever its name (report.html's
//! caption under each figure gives the stage).

/// The images an evaluation was computed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluatedSet {
    /// The split's test rows (the titles every run had before external sets existed).
    TestSplit,
    /// Every row of an external set, with each class's name and number of images, by label.
    External { counts: Vec<(String, u64)> },
}

impl EvaluatedSet {
    /// An external set of `counts[k]` images of class `classes[k]`.
    pub fn external(classes: &[String], counts: &[u64]) -> Self {
        EvaluatedSet::External {
            counts: classes
                .iter()
                .cloned()
                .zip(counts.iter().copied())
                .collect(),
        }
    }

    /// "external set: 79 COVID, 105 NORMAL": two classes positive first, as the metrics
    /// are; more in label order ("10 NORMAL, 5 PNEUMONIA, 20 COVID-19").
    fn described(counts: &[(String, u64)]) -> String {
        let parts: Vec<String> = if counts.len() == 2 {
            counts
                .iter()
                .rev()
                .map(|(c, n)| format!("{n} {c}"))
                .collect()
        } else {
            counts.iter().map(|(c, n)| format!("{n} {c}")).collect()
        };
        format!("external set: {}", parts.join(", "))
    }

    /// The confusion matrix's title, given how many of the `total` images were classified
    /// right.
    pub(super) fn confusion_title(&self, correct: u64, total: u64) -> String {
        match self {
            EvaluatedSet::TestSplit => {
                format!("Confusion matrix: {correct} of {total} test images correct")
            }
            EvaluatedSet::External { counts } => {
                format!("Confusion matrix, {}", Self::described(counts))
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

    /// The line under a C-class confusion matrix's title (cells coloured by row share).
    pub(super) fn class_confusion_subtitle(&self, correct: u64, total: u64) -> String {
        let cells = "each cell: count and share of its row (the true class)";
        match self {
            EvaluatedSet::TestSplit => cells.to_string(),
            EvaluatedSet::External { .. } => format!("{correct} of {total} correct; {cells}"),
        }
    }

    /// The title of the one-vs-rest ROC curves.
    pub(super) fn class_roc_title(&self) -> String {
        match self {
            EvaluatedSet::TestSplit => "One-vs-rest ROC curves on the test set".into(),
            EvaluatedSet::External { counts } => {
                format!("One-vs-rest ROC curves, {}", Self::described(counts))
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
                format!("ROC curve, {}", Self::described(counts))
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
        let names = ["NORMAL".to_string(), "COVID".to_string()];
        let set = EvaluatedSet::external(&names, &[105, 79]);
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
    fn three_classes_are_described_in_label_order() {
        let names = ["NORMAL", "PNEUMONIA", "COVID-19"].map(String::from);
        let set = EvaluatedSet::external(&names, &[10, 5, 20]);
        assert_eq!(
            set.roc_title(),
            "ROC curve, external set: 10 NORMAL, 5 PNEUMONIA, 20 COVID-19"
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
