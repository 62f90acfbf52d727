//! A train/test split that keeps every group (a patient) on one side and each class's test
//! share near `test_fraction`: scikit-learn's `StratifiedGroupKFold`, adapted to one split.
//!
//! As there, the groups are visited in a seeded, shuffled order, stably sorted by the spread
//! of their class counts (most uneven first: of groups of one class, the largest, which are
//! the hardest to place and go while there is room to even them out), and each is put on the side where, after it, the classes' fills are most
//! even. scikit-learn's folds are equal, so it compares `count / class total` across folds;
//! here the two sides want `test_fraction` and `1 - test_fraction` of each class, so each side's
//! count is also divided by its own share: a side at its target has fill 1. The score of a
//! placement is the mean over classes of the standard deviation of the two sides' fills (ties,
//! as `np.isclose` sees them, go to the side less filled overall, then to test).
//!
//! For groups of one class (a patient with one finding), the greedy step keeps the gap between
//! the two fills of a class within `m / (total * min(f, 1 - f))`, `m` its largest group, which
//! puts its test share within `max(f, 1 - f) * m / total` of `f` (the bound the tests check).
//!
//! Everything is integer counting and f64 arithmetic in a fixed order over one ChaCha8 stream:
//! the same seed, labels and groups give the same split on any machine and thread count.

use std::collections::{BTreeMap, HashMap};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::{shuffle, Split, SplitConfig, SplitCounts, SplitError};

/// Groups on each side of a grouped split, and each class's largest group, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupCounts {
    /// Groups with rows in training.
    pub train: usize,
    /// Groups with rows in test.
    pub test: usize,
    /// `label -> rows of that label in its largest group`.
    pub largest: BTreeMap<u8, usize>,
}

/// One group: its rows (in row order) and its rows per class (indexed like `classes`).
struct Group {
    rows: Vec<usize>,
    counts: Vec<u64>,
}

/// Splits rows `0..labels.len()` so that rows sharing a non-empty `groups` value are on one
/// side; a row whose group is empty is a group of its own. Errors when a class ends with no
/// training or no test row, naming it by `class_names` (`label -> name`, the label's number
/// where it has none).
pub fn split_grouped(
    labels: &[u8],
    groups: &[String],
    class_names: &BTreeMap<u8, String>,
    cfg: &SplitConfig,
) -> Result<Split, SplitError> {
    let f = cfg.test_fraction;
    if cfg.validate().is_err() {
        return Err(SplitError::Fraction(f));
    }
    if groups.len() != labels.len() {
        return Err(SplitError::GroupCount {
            groups: groups.len(),
            labels: labels.len(),
        });
    }
    // Classes present, in label order; `class_of[label]` is its position.
    let mut classes: Vec<u8> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let position: BTreeMap<u8, usize> = classes.iter().enumerate().map(|(i, &l)| (l, i)).collect();
    let c = classes.len();

    // Groups in order of first appearance.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut all: Vec<Group> = Vec::new();
    for (row, (&label, group)) in labels.iter().zip(groups).enumerate() {
        let g = if group.is_empty() {
            all.len()
        } else {
            *index.entry(group.as_str()).or_insert(all.len())
        };
        if g == all.len() {
            all.push(Group {
                rows: Vec::new(),
                counts: vec![0; c],
            });
        }
        all[g].rows.push(row);
        all[g].counts[position[&label]] += 1;
    }

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..all.len()).collect();
    shuffle(&mut order, &mut rng);
    // `c * Σg² - (Σg)²` is `c²` times the variance of the group's class counts: the same
    // order as scikit-learn's `np.std`, computed exactly. `sort_by` is stable.
    let spread = |g: &Group| -> u128 {
        let sum: u128 = g.counts.iter().map(|&v| u128::from(v)).sum();
        let squares: u128 = g
            .counts
            .iter()
            .map(|&v| u128::from(v) * u128::from(v))
            .sum();
        c as u128 * squares - sum * sum
    };
    order.sort_by(|&a, &b| spread(&all[b]).cmp(&spread(&all[a])));

    let totals: Vec<u64> = (0..c)
        .map(|k| all.iter().map(|g| g.counts[k]).sum())
        .collect();
    let n = labels.len() as f64;
    // Side 0 is test, side 1 training.
    let want = [f, 1.0 - f];
    let mut fill = [vec![0u64; c], vec![0u64; c]];
    let mut side_of = vec![0usize; all.len()];
    for &g in &order {
        let counts = &all[g].counts;
        let mut best: Option<(usize, f64, f64)> = None;
        for side in 0..2 {
            for k in 0..c {
                fill[side][k] += counts[k];
            }
            let score = placement_score(&fill, &totals, want);
            for k in 0..c {
                fill[side][k] -= counts[k];
            }
            // The side's rows before this group, relative to what it should hold.
            let rows = fill[side].iter().sum::<u64>() as f64 / (n * want[side]);
            let better = match best {
                None => true,
                Some((_, best_score, best_rows)) => {
                    score < best_score && !is_close(score, best_score)
                        || is_close(score, best_score) && rows < best_rows
                }
            };
            if better {
                best = Some((side, score, rows));
            }
        }
        let side = best.map_or(1, |b| b.0);
        for k in 0..c {
            fill[side][k] += counts[k];
        }
        side_of[g] = side;
    }

    let (mut test, mut train) = (Vec::new(), Vec::new());
    for &g in &order {
        let rows = &all[g].rows;
        if side_of[g] == 0 {
            test.extend_from_slice(rows);
        } else {
            train.extend_from_slice(rows);
        }
    }
    // Both sides in random order, as the other splits give them.
    shuffle(&mut test, &mut rng);
    shuffle(&mut train, &mut rng);

    for (k, &label) in classes.iter().enumerate() {
        for (side, name) in [(0, "test"), (1, "training")] {
            if fill[side][k] == 0 {
                let groups = all.iter().filter(|g| g.counts[k] > 0).count();
                return Err(SplitError::EmptySide {
                    class: class_names
                        .get(&label)
                        .cloned()
                        .unwrap_or_else(|| label.to_string()),
                    side: name,
                    rows: totals[k],
                    groups,
                    group_by: cfg.group_by.clone().unwrap_or_else(|| "group".into()),
                });
            }
        }
    }
    let count = |side: usize| -> BTreeMap<u8, usize> {
        classes
            .iter()
            .enumerate()
            .map(|(k, &l)| (l, fill[side][k] as usize))
            .collect()
    };
    let largest = classes
        .iter()
        .enumerate()
        .map(|(k, &l)| {
            (
                l,
                all.iter().map(|g| g.counts[k]).max().unwrap_or(0) as usize,
            )
        })
        .collect();
    let groups_on = |side: usize| (0..all.len()).filter(|&g| side_of[g] == side).count();
    Ok(Split {
        counts: SplitCounts {
            train: count(1),
            test: count(0),
        },
        train,
        test,
        groups: Some(GroupCounts {
            train: groups_on(1),
            test: groups_on(0),
            largest,
        }),
    })
}

/// The mean over classes of the standard deviation of the two sides' fills, each side's count
/// over its target (`want[side] * total`).
fn placement_score(fill: &[Vec<u64>; 2], totals: &[u64], want: [f64; 2]) -> f64 {
    let mut sum = 0.0;
    for (k, &total) in totals.iter().enumerate() {
        let x = [0, 1].map(|s| fill[s][k] as f64 / (total as f64 * want[s]));
        // The population standard deviation of two values.
        sum += (x[0] - x[1]).abs() / 2.0;
    }
    sum / totals.len() as f64
}

/// `np.isclose` with its default tolerances.
fn is_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand_core::RngCore;

    use super::*;

    /// `classes` classes of `per_class` groups each, every group of one class and of 1 to
    /// `max_group` rows, rows of a group not adjacent (interleaved by a shuffle).
    fn patients(
        classes: u8,
        per_class: usize,
        max_group: u64,
        seed: u64,
    ) -> (Vec<u8>, Vec<String>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = Vec::new();
        for class in 0..classes {
            for p in 0..per_class {
                let size = 1 + rng.next_u64() % max_group;
                for _ in 0..size {
                    rows.push((class, format!("p{class}-{p}")));
                }
            }
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        shuffle(&mut order, &mut rng);
        order.into_iter().map(|i| rows[i].clone()).unzip()
    }

    fn grouped(fraction: f64, seed: u64) -> SplitConfig {
        SplitConfig {
            test_fraction: fraction,
            seed,
            group_by: Some("patientid".into()),
            ..SplitConfig::default()
        }
    }

    fn names() -> BTreeMap<u8, String> {
        BTreeMap::from([
            (0, "NORMAL".to_owned()),
            (1, "PNEUMONIA".to_owned()),
            (2, "COVID-19".to_owned()),
        ])
    }

    /// Every row once; no group on both sides; counts agree with the rows.
    fn check_partition(s: &Split, labels: &[u8], groups: &[String]) {
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        let side = |rows: &[usize]| -> BTreeSet<String> {
            rows.iter()
                .map(|&r| groups[r].clone())
                .filter(|g| !g.is_empty())
                .collect()
        };
        let (train, test) = (side(&s.train), side(&s.test));
        assert!(
            train.is_disjoint(&test),
            "on both sides: {:?}",
            train.intersection(&test).collect::<Vec<_>>()
        );
        for (rows, counts) in [(&s.train, &s.counts.train), (&s.test, &s.counts.test)] {
            for (&label, &n) in counts {
                assert_eq!(rows.iter().filter(|&&r| labels[r] == label).count(), n);
            }
        }
        let g = s
            .groups
            .as_ref()
            .expect("a grouped split counts its groups");
        let distinct = |rows: &[usize]| {
            rows.iter()
                .map(|&r| {
                    if groups[r].is_empty() {
                        format!("row {r}")
                    } else {
                        groups[r].clone()
                    }
                })
                .collect::<BTreeSet<_>>()
                .len()
        };
        assert_eq!((g.train, g.test), (distinct(&s.train), distinct(&s.test)));
    }

    #[test]
    fn no_group_on_both_sides_and_shares_within_the_largest_group() {
        for (seed, fraction, max_group) in [(1, 0.2, 4), (2, 0.2, 6), (3, 0.3, 3), (4, 0.5, 5)] {
            let (labels, groups) = patients(3, 40, max_group, seed);
            let s = split_grouped(&labels, &groups, &names(), &grouped(fraction, 40)).unwrap();
            check_partition(&s, &labels, &groups);
            let largest = &s.groups.as_ref().unwrap().largest;
            for (label, &test) in &s.counts.test {
                let total = test + s.counts.train[label];
                let share = test as f64 / total as f64;
                // The greedy step's bound for groups of one class (see the module's notes).
                let bound = fraction.max(1.0 - fraction) * largest[label] as f64 / total as f64;
                assert!(
                    (share - fraction).abs() <= bound + 1e-12,
                    "seed {seed}, class {label}: {test} of {total} = {share}, asked \
                     {fraction}, bound {bound}"
                );
                assert!(largest[label] as u64 <= max_group);
            }
        }
    }

    #[test]
    fn largest_groups_are_placed_first() {
        // Class 0: a group of 5 and five single rows, half to test. Its spread (5 rows of
        // one class of two) sends the 5 first, and the singles balance it exactly; visited
        // later it could not be. Class 1: two single rows.
        let labels = [vec![0u8; 10], vec![1u8; 2]].concat();
        let groups: Vec<String> = [
            "a", "b", "big", "c", "big", "big", "d", "big", "e", "big", "f", "g",
        ]
        .map(String::from)
        .to_vec();
        for seed in 0..20 {
            let s = split_grouped(&labels, &groups, &names(), &grouped(0.5, seed)).unwrap();
            check_partition(&s, &labels, &groups);
            assert_eq!(
                (s.counts.test[&0], s.counts.train[&0]),
                (5, 5),
                "seed {seed}"
            );
            assert_eq!(
                (s.counts.test[&1], s.counts.train[&1]),
                (1, 1),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn empty_groups_are_rows_of_their_own_and_mixed_groups_stay_whole() {
        let (mut labels, mut groups) = patients(2, 30, 3, 9);
        // Rows without a group, and one patient with images of two classes.
        labels.extend([0, 1, 0, 1, 1, 0]);
        groups.extend(["", "", "", "both", "both", "both"].map(String::from));
        let s = split_grouped(&labels, &groups, &names(), &grouped(0.25, 3)).unwrap();
        check_partition(&s, &labels, &groups);
        let n = labels.len();
        let sides: BTreeSet<bool> = (n - 3..n).map(|r| s.test.contains(&r)).collect();
        assert_eq!(sides.len(), 1, "the mixed group is split");
        // Only rows without a group: each is a group, and the split is stratified.
        let labels = [vec![0u8; 30], vec![1u8; 20]].concat();
        let groups = vec![String::new(); 50];
        let s = split_grouped(&labels, &groups, &names(), &grouped(0.2, 5)).unwrap();
        assert_eq!((s.counts.test[&0], s.counts.test[&1]), (6, 4));
        assert_eq!(s.groups.as_ref().map(|g| (g.train, g.test)), Some((40, 10)));
    }

    #[test]
    fn deterministic_seeded_pinned_and_independent_of_threads() {
        let (labels, groups) = patients(3, 25, 4, 11);
        let cfg = grouped(0.2, 40);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| split_grouped(&labels, &groups, &names(), &cfg).unwrap())
        };
        let a = run(1);
        assert_eq!(a, run(2));
        assert_eq!(a, run(4));
        let other = split_grouped(&labels, &groups, &names(), &grouped(0.2, 41)).unwrap();
        assert_ne!(a.test, other.test);
        // Pinned so that an accidental change of the algorithm is caught.
        assert_eq!(&a.test[..5], &PINNED_FIRST_TEST);
        assert_eq!(&a.train[..5], &PINNED_FIRST_TRAIN);
    }

    const PINNED_FIRST_TEST: [usize; 5] = [124, 66, 7, 165, 70];
    const PINNED_FIRST_TRAIN: [usize; 5] = [93, 132, 81, 31, 56];

    #[test]
    fn a_class_with_one_group_cannot_be_on_both_sides() {
        let labels = [vec![0u8; 10], vec![2u8; 4]].concat();
        let mut groups: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        groups.extend(std::iter::repeat_n("p1".to_owned(), 4));
        let err = split_grouped(&labels, &groups, &names(), &grouped(0.2, 40)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the split grouped by patientid leaves class \"COVID-19\" with no test image: its \
             4 images have 1 patientid value(s) and a group is never divided; give the class \
             more groups or change test_fraction"
        );
        let err = split_grouped(&labels, &groups[..3], &names(), &grouped(0.2, 40)).unwrap_err();
        assert!(
            matches!(
                err,
                SplitError::GroupCount {
                    groups: 3,
                    labels: 14
                }
            ),
            "{err}"
        );
    }
}
