//! Hand-computed cases of the multi-class metrics: three classes, an absent class, ties.

use super::super::Z_95;
use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// Six images of three classes; sample 1 ties classes 0 and 1 and goes to class 0.
const LABELS: [u32; 6] = [0, 0, 1, 1, 2, 2];
#[rustfmt::skip]
const PROBABILITIES: [f32; 18] = [
    0.7, 0.2, 0.1, // 0 right
    0.4, 0.4, 0.2, // tie: 0, right
    0.3, 0.6, 0.1, // 1 right
    0.5, 0.3, 0.2, // 0, wrong
    0.1, 0.2, 0.7, // 2 right
    0.2, 0.5, 0.3, // 1, wrong
];

#[test]
fn argmax_ties_go_to_the_lowest_class() {
    assert_eq!(predicted_class(&[0.4, 0.4, 0.2]), 0);
    assert_eq!(predicted_class(&[0.2, 0.4, 0.4]), 1);
    assert_eq!(predicted_class(&[0.1, 0.2, 0.7]), 2);
    assert_eq!(predicted_class(&[0.5, 0.5]), 0);
}

#[test]
fn three_classes_by_hand() {
    let e = MulticlassEvaluation::compute(&LABELS, &PROBABILITIES, 3).unwrap();
    assert_eq!(e.confusion, [[2, 0, 0], [1, 1, 0], [0, 1, 1]]);
    assert_eq!(e.accuracy.value(), Some(4.0 / 6.0));
    // Class 0: tp 2, fp 1, fn 0, tn 3.  Class 1: tp 1, fp 1, fn 1, tn 3.
    // Class 2: tp 1, fp 0, fn 1, tn 4.
    let expected = [
        (2.0 / 2.0, 3.0 / 4.0, 2.0 / 3.0, 4.0 / 5.0, 7.0 / 8.0),
        (1.0 / 2.0, 3.0 / 4.0, 1.0 / 2.0, 2.0 / 4.0, 6.0 / 8.0),
        (1.0 / 2.0, 4.0 / 4.0, 1.0 / 1.0, 2.0 / 3.0, 8.0 / 8.0),
    ];
    for (c, (sens, spec, prec, f1, auc)) in e.classes.iter().zip(expected) {
        assert_eq!(c.support, 2);
        assert!(close(c.sensitivity.value().unwrap(), sens), "{c:?}");
        assert!(close(c.specificity.value().unwrap(), spec), "{c:?}");
        assert!(close(c.precision.value().unwrap(), prec), "{c:?}");
        assert!(close(c.f1, f1), "{c:?}");
        // Class 0's AUC: 0.7 beats all four negatives, 0.4 beats three (not 0.5): 7/8.
        assert!(close(c.auc.unwrap(), auc), "{c:?}");
        assert!(!c.f1_ill_defined);
    }
    let macro_f1 = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
    assert!(close(e.macro_f1, macro_f1));
    // Equal supports: the weighted mean is the plain one.
    assert!(close(e.weighted_f1, macro_f1));
    assert!(close(e.macro_auc.unwrap(), 0.875));
    // The intervals are Proportion's Wilson intervals of those counts.
    assert_eq!(
        e.classes[1].sensitivity.wilson(Z_95),
        Proportion {
            successes: 1,
            trials: 2
        }
        .wilson(Z_95)
    );
}

#[test]
fn pairwise_auc_by_hand() {
    // Classes 0 and 1 (samples 0-3): AUC(p0, y == 0) = 3/4 (0.4 loses to 0.5),
    // AUC(p1, y == 1) = 3/4 (0.3 loses to 0.4) -> 0.75.
    let auc01 = pairwise_auc(&LABELS, &PROBABILITIES, 3, 0, 1).unwrap();
    assert!(close(auc01.unwrap(), 0.75));
    // Classes 1 and 2 (samples 2-5): 3/4 and 4/4 -> 0.875, in either order.
    for (a, b) in [(1, 2), (2, 1)] {
        let auc = pairwise_auc(&LABELS, &PROBABILITIES, 3, a, b).unwrap();
        assert!(close(auc.unwrap(), 0.875));
    }
}

#[test]
fn an_absent_class_has_no_sensitivity_and_no_auc() {
    // Class 2 never true but predicted once (for a class-0 image).
    let labels = [0, 1, 0, 1];
    #[rustfmt::skip]
    let probabilities = [
        0.6, 0.3, 0.1,
        0.2, 0.7, 0.1,
        0.2, 0.2, 0.6,
        0.5, 0.4, 0.1,
    ];
    let e = MulticlassEvaluation::compute(&labels, &probabilities, 3).unwrap();
    assert_eq!(e.confusion, [[1, 0, 1], [1, 1, 0], [0, 0, 0]]);
    let absent = &e.classes[2];
    assert_eq!(absent.support, 0);
    assert_eq!(absent.sensitivity.value(), None);
    assert_eq!(absent.sensitivity.wilson(Z_95), None);
    assert_eq!(absent.specificity.value(), Some(0.75));
    // Predicted once, wrongly: a real 0 precision, and F1 = 0 / (0 + 1 + 0), defined.
    assert_eq!(absent.precision.value(), Some(0.0));
    assert_eq!((absent.f1, absent.f1_ill_defined), (0.0, false));
    assert_eq!(absent.auc, None);
    // F1: class 0 = 2/4, class 1 = 2/3, class 2 = 0; supports 2, 2, 0.
    assert!(close(e.macro_f1, 7.0 / 18.0));
    assert!(close(e.weighted_f1, 7.0 / 12.0));
    // Class 0's AUC: 0.6 beats 0.2 and 0.5; 0.2 ties 0.2 (half) and loses to 0.5: 2.5/4.
    assert!(close(e.classes[0].auc.unwrap(), 0.625));
    assert!(close(e.classes[1].auc.unwrap(), 1.0));
    // The macro AUC runs over the two defined classes.
    assert!(close(e.macro_auc.unwrap(), 0.8125));
    assert_eq!(
        pairwise_auc(&labels, &probabilities, 3, 0, 2).unwrap(),
        None
    );
}

#[test]
fn never_predicted_has_no_precision() {
    // Class 1 present twice but never predicted (the 0.5/0.5 tie goes to class 0).
    let e = MulticlassEvaluation::compute(&[0, 1, 1], &[0.6, 0.4, 0.7, 0.3, 0.5, 0.5], 2).unwrap();
    let never = &e.classes[1];
    assert_eq!(never.precision.value(), None);
    assert_eq!(never.sensitivity.value(), Some(0.0));
    assert_eq!((never.f1, never.f1_ill_defined), (0.0, false));
    // Neither present nor predicted: F1 is 0/0, set to 0 and flagged, as sklearn.
    let e = MulticlassEvaluation::compute(&[0, 0], &[0.9, 0.1, 0.8, 0.2], 2).unwrap();
    let none = &e.classes[1];
    assert_eq!((none.f1, none.f1_ill_defined), (0.0, true));
    // Every image is class 0: class 0 has no specificity, and no AUC.
    assert_eq!(e.classes[0].specificity.value(), None);
    assert_eq!(e.classes[0].auc, None);
    assert_eq!(e.macro_auc, None);
    assert!(close(e.macro_f1, 0.5));
    assert!(close(e.weighted_f1, 1.0));
}

#[test]
fn validation_names_the_bad_input() {
    let err = |labels: &[u32], p: &[f32], c| {
        MulticlassEvaluation::compute(labels, p, c)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&[0], &[1.0], 1),
        "1 classes given; at least 2 are needed"
    );
    assert_eq!(
        err(&[0, 1], &[0.5, 0.5, 0.5], 2),
        "2 labels with 2 classes need 4 probabilities, got 3"
    );
    assert_eq!(err(&[], &[], 3), "no samples to evaluate");
    assert_eq!(
        err(&[0, 3], &[0.5, 0.3, 0.2, 0.5, 0.3, 0.2], 3),
        "label 3 at index 1 is not a class (expected 0 to 2)"
    );
    assert_eq!(
        err(&[0, 1], &[0.5, 0.5, f32::NAN, 0.5], 2),
        "probability NaN of class 0 for sample 1 is not in [0, 1]"
    );
    let pair = |a, b| {
        pairwise_auc(&LABELS, &PROBABILITIES, 3, a, b)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        pair(0, 3),
        "class 3 named for the pairwise AUC is not one of the 3 classes"
    );
    assert_eq!(
        pair(1, 1),
        "the pairwise AUC needs two different classes, got class 1 twice"
    );
}
