//! Class names and the metric names derived from them (`sensitivity_covid_19` for the class
//! `COVID-19`), so that every label, caption and metric name comes from the experiment's
//! own classes.
//!
//! The slug rule: ASCII letters and digits are kept, lowercased; every run of other
//! characters becomes one `_`; leading and trailing `_` are dropped (`COVID-19` ->
//! `covid_19`, `Streptococcus spp.` -> `streptococcus_spp`). A slug holds none of the
//! characters that `pipeline runs --where/--sort` and a run's `stage.metric` keys give a
//! meaning to (`.`, `<`, `>`, `=`, `!`, `:`), so `evaluate.sensitivity_covid_19>0.9` parses
//! and an experiment's `headline` can list `sensitivity_covid_19`. model1's classes NORMAL and
//! COVID give `normal` and `covid`, the names its metrics always had (`n_covid`,
//! `precision_covid`).

use super::{MetricsError, CLASS_NAMES};

/// The metric-name part of the class `name` (see the module's rule).
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// The classes of an evaluation, indexed by label, with their slugs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNames {
    names: Vec<String>,
    slugs: Vec<String>,
}

impl ClassNames {
    /// At least two names whose slugs are non-empty and distinct (two classes must not
    /// write the same metric), none of them `test` (`n_test` counts every image).
    pub fn new(names: Vec<String>) -> Result<Self, MetricsError> {
        let bad = |message: String| MetricsError::ClassNames { message };
        if names.len() < 2 {
            return Err(bad(format!(
                "{} class name(s) given ({:?}); at least 2 are needed",
                names.len(),
                names
            )));
        }
        let slugs: Vec<String> = names.iter().map(|n| slug(n)).collect();
        for (i, s) in slugs.iter().enumerate() {
            if s.is_empty() {
                return Err(bad(format!(
                    "class name {:?} has no ASCII letter or digit to name its metrics",
                    names[i]
                )));
            }
            if s == "test" {
                return Err(bad(format!(
                    "class name {:?} would write the metric `n_test`, which counts every image; \
                     rename the class",
                    names[i]
                )));
            }
            if let Some(j) = slugs[..i].iter().position(|t| t == s) {
                return Err(bad(format!(
                    "class names {:?} and {:?} both give the metric names `*_{s}`; rename one",
                    names[j], names[i]
                )));
            }
        }
        Ok(Self { names, slugs })
    }

    /// model1's classes, NORMAL (0) and COVID (1): the default of a two-class checkpoint.
    pub fn default_binary() -> Self {
        Self::new(CLASS_NAMES.iter().map(|s| s.to_string()).collect())
            .expect("NORMAL and COVID are valid class names")
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true: there are at least two classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of class `k`.
    pub fn name(&self, k: usize) -> &str {
        &self.names[k]
    }

    /// The slug of class `k`.
    pub fn slug(&self, k: usize) -> &str {
        &self.slugs[k]
    }

    /// The label of the class called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Whether these are model1's NORMAL and COVID (whose run records carry no class note).
    pub fn is_default_binary(&self) -> bool {
        self.names.iter().map(String::as_str).eq(CLASS_NAMES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_letters_and_digits_and_join_the_rest_with_one_underscore() {
        assert_eq!(slug("COVID-19"), "covid_19");
        assert_eq!(slug("NORMAL"), "normal");
        assert_eq!(slug("COVID"), "covid");
        assert_eq!(slug("  Streptococcus spp. "), "streptococcus_spp");
        assert_eq!(slug("a.b<c>d=e!f:g"), "a_b_c_d_e_f_g");
        assert_eq!(slug("Ωmega 2"), "mega_2");
        assert_eq!(slug("--"), "");
    }

    #[test]
    fn names_must_be_two_or_more_with_distinct_slugs() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = ClassNames::new(names(&["NORMAL", "PNEUMONIA", "COVID-19"])).unwrap();
        assert_eq!(c.slug(2), "covid_19");
        assert_eq!(c.index_of("PNEUMONIA"), Some(1));
        assert!(!c.is_default_binary());
        assert!(ClassNames::default_binary().is_default_binary());
        let e = ClassNames::new(names(&["COVID-19", "covid 19"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"COVID-19\" and \"covid 19\"") && e.contains("covid_19"),
            "{e}"
        );
        let e = ClassNames::new(names(&["A", "??"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"??\""), "{e}");
        let e = ClassNames::new(names(&["A", "Test"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"Test\"") && e.contains("n_test"), "{e}");
        let e = ClassNames::new(names(&["A"])).unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
    }
}
