//! Numbers and names written for people: durations, sizes, metrics and short lists, in the
//! CLI and in reports alike.

/// `420 ms`, `12.3 s`, `3 min 5 s`.
pub fn format_seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    }
}

/// `999 B`, `12.3 kB`, `58.0 MB` (decimal units).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// A metric with up to six decimals and no trailing zeros; very small or large values in
/// exponent form, where fixed decimals would show only zeros or noise.
pub fn format_metric(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-4..1e12).contains(&magnitude) {
        return format!("{v:.4e}");
    }
    let fixed = format!("{v:.6}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// The first three names, and how many more.
pub(crate) fn brief(names: &[&str]) -> String {
    let shown: Vec<&str> = names.iter().take(3).copied().collect();
    let more = names.len().saturating_sub(3);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_keep_their_precision_without_noise() {
        assert_eq!(format_metric(0.9125), "0.9125");
        assert_eq!(format_metric(12.0), "12");
        assert_eq!(format_metric(0.0), "0");
        assert_eq!(format_metric(-0.5), "-0.5");
        assert_eq!(format_metric(1.5e-7), "1.5000e-7");
        assert_eq!(format_metric(f64::NAN), "NaN");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(12_345), "12.3 kB");
        assert_eq!(format_bytes(58_000_000), "58.0 MB");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_seconds(0.42), "420 ms");
        assert_eq!(format_seconds(12.34), "12.3 s");
        assert_eq!(format_seconds(185.0), "3 min 5 s");
    }
}
