//! How near each class's test share came to `test_fraction`: the lines of a grouped split's
//! report, and a warning for a class that is further off than [`SHARE_TOLERANCE`].

use std::collections::BTreeMap;

use super::Split;

/// A class whose test share is further than this from `test_fraction` is warned about. A
/// grouped split moves whole groups, so it can only come near; five points is roughly what
/// one patient of four images costs a class of eighty.
pub const SHARE_TOLERANCE: f64 = 0.05;

/// One class's place in a split.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassShare {
    pub class: String,
    pub label: u8,
    /// Rows of the class in test.
    pub test: usize,
    /// Rows of the class in all.
    pub total: usize,
    /// `test / total`.
    pub share: f64,
    /// `test_fraction`.
    pub asked: f64,
    /// Rows of the class in its largest group, when the split is grouped.
    pub largest_group: Option<usize>,
}

impl ClassShare {
    /// "COVID-19: 36 of 175 in test (0.206, asked 0.200)".
    pub fn line(&self) -> String {
        format!(
            "{}: {} of {} in test ({:.3}, asked {:.3})",
            self.class, self.test, self.total, self.share, self.asked
        )
    }

    /// How far the share is from the one asked for.
    pub fn off(&self) -> f64 {
        (self.share - self.asked).abs()
    }

    /// The warning for a share off by more than [`SHARE_TOLERANCE`], naming the class, by how
    /// much, and its largest group (`group_by` names the groups' column).
    pub fn warning(&self, group_by: &str) -> Option<String> {
        if self.off() <= SHARE_TOLERANCE {
            return None;
        }
        let groups = self.largest_group.map_or(String::new(), |m| {
            format!("; its largest {group_by} group has {m} image(s)")
        });
        Some(format!(
            "{}, off by {:.3}, more than {SHARE_TOLERANCE}{groups}",
            self.line(),
            self.off()
        ))
    }
}

/// Every class of `split`, in label order, named by `names` (`label -> class`; the label's
/// number where it has none).
pub fn class_shares(split: &Split, names: &BTreeMap<u8, String>, asked: f64) -> Vec<ClassShare> {
    let mut labels: Vec<u8> = split
        .counts
        .train
        .keys()
        .chain(split.counts.test.keys())
        .copied()
        .collect();
    labels.sort_unstable();
    labels.dedup();
    labels
        .into_iter()
        .map(|label| {
            let test = split.counts.test.get(&label).copied().unwrap_or(0);
            let total = test + split.counts.train.get(&label).copied().unwrap_or(0);
            ClassShare {
                class: names
                    .get(&label)
                    .cloned()
                    .unwrap_or_else(|| label.to_string()),
                label,
                test,
                total,
                share: test as f64 / total as f64,
                asked,
                largest_group: split
                    .groups
                    .as_ref()
                    .and_then(|g| g.largest.get(&label).copied()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::split::{GroupCounts, SplitCounts};

    #[test]
    fn lines_and_warnings_say_by_how_much() {
        let split = Split {
            train: Vec::new(),
            test: Vec::new(),
            counts: SplitCounts {
                train: BTreeMap::from([(0, 80), (1, 139), (2, 55)]),
                test: BTreeMap::from([(0, 20), (1, 36), (2, 22)]),
            },
            groups: Some(GroupCounts {
                train: 1,
                test: 1,
                largest: BTreeMap::from([(0, 1), (1, 4), (2, 5)]),
            }),
        };
        let names = BTreeMap::from([(1, "COVID-19".to_owned()), (2, "PNEUMONIA".to_owned())]);
        let shares = class_shares(&split, &names, 0.2);
        let lines: Vec<String> = shares.iter().map(ClassShare::line).collect();
        assert_eq!(
            lines,
            [
                "0: 20 of 100 in test (0.200, asked 0.200)",
                "COVID-19: 36 of 175 in test (0.206, asked 0.200)",
                "PNEUMONIA: 22 of 77 in test (0.286, asked 0.200)",
            ]
        );
        assert_eq!(shares[1].warning("patientid"), None);
        assert_eq!(
            shares[2].warning("patientid").as_deref(),
            Some(
                "PNEUMONIA: 22 of 77 in test (0.286, asked 0.200), off by 0.086, more than \
                 0.05; its largest patientid group has 5 image(s)"
            )
        );
    }
}
