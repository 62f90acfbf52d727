//! How much memory the process may still take, so that a stage refuses an allocation it
//! cannot get with a message saying what it needed, instead of being aborted by the allocator
//! or killed by the kernel halfway through.

use std::collections::TryReserveError;
use std::fmt;

/// A byte count printed for people: `805306368` as `805.3 MB`, `4026531840000` as `4.0 TB`
/// (decimal units, as `df -H` and most disk and memory tools print).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1000.0 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} bytes", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

/// More memory was needed than the machine has free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub needed: Bytes,
    pub available: Bytes,
}

/// Bytes this process can still allocate without swapping or being killed, or `None` where
/// that cannot be known (not Linux).
///
/// Linux's `MemAvailable` (free memory plus the page cache it can reclaim), lowered to what a
/// cgroup memory limit still allows when the process runs in a limited container: there the
/// kernel kills the process at the limit whatever the machine has free.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let machine = meminfo_field(&meminfo, "MemAvailable")?;
    Some(match cgroup_headroom() {
        Some(limit) => machine.min(limit),
        None => machine,
    })
}

/// Fails when `needed` bytes exceed [`available`] memory (never when that is unknown: the
/// fallible allocation that follows is then the only guard).
pub fn check(needed: u64) -> Result<(), Shortfall> {
    match available() {
        Some(available) => check_against(needed, available),
        None => Ok(()),
    }
}

/// [`check`] against a given amount of available memory.
pub fn check_against(needed: u64, available: u64) -> Result<(), Shortfall> {
    if needed > available {
        Err(Shortfall {
            needed: Bytes(needed),
            available: Bytes(available),
        })
    } else {
        Ok(())
    }
}

/// `len` zero bytes, or an error where the allocator cannot provide them (where `vec![0; len]`
/// would abort the process).
pub fn try_zeroed(len: usize) -> Result<Vec<u8>, TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)?;
    v.resize(len, 0);
    Ok(v)
}

/// A `kB` field of `/proc/meminfo`, in bytes.
fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb.saturating_mul(1024))
    })
}

/// What the cgroup memory limit of this process still allows, when one is set: the limit
/// minus the usage that cannot be reclaimed (usage less inactive page cache). cgroup v2
/// (`memory.max`) or v1 (`memory/memory.limit_in_bytes`), as mounted in a container.
fn cgroup_headroom() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let number = |text: Option<String>| text?.trim().parse::<u64>().ok();
    let stat_field = |text: Option<String>, name: &str| -> Option<u64> {
        text?.lines().find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
    };
    let (limit, usage, inactive) = if let Some(limit) = number(read("/sys/fs/cgroup/memory.max")) {
        let usage = number(read("/sys/fs/cgroup/memory.current"))?;
        let inactive = stat_field(read("/sys/fs/cgroup/memory.stat"), "inactive_file");
        (limit, usage, inactive)
    } else {
        let limit = number(read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
        let usage = number(read("/sys/fs/cgroup/memory/memory.usage_in_bytes"))?;
        let inactive = stat_field(
            read("/sys/fs/cgroup/memory/memory.stat"),
            "total_inactive_file",
        );
        (limit, usage, inactive)
    };
    // v1 writes "no limit" as a huge page-aligned number near i64::MAX.
    if limit >= 1 << 60 {
        return None;
    }
    let unreclaimable = usage.saturating_sub(inactive.unwrap_or(0));
    Some(limit.saturating_sub(unreclaimable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_in_decimal_units() {
        assert_eq!(Bytes(0).to_string(), "0 bytes");
        assert_eq!(Bytes(999).to_string(), "999 bytes");
        assert_eq!(Bytes(1000).to_string(), "1.0 kB");
        assert_eq!(Bytes(805_306_368).to_string(), "805.3 MB");
        assert_eq!(Bytes(5000 * 805_306_368).to_string(), "4.0 TB");
        assert_eq!(Bytes(u64::MAX).to_string(), "18446.7 PB");
    }

    #[test]
    fn check_compares_needed_with_available() {
        assert_eq!(check_against(10, 10), Ok(()));
        assert_eq!(
            check_against(11, 10),
            Err(Shortfall {
                needed: Bytes(11),
                available: Bytes(10)
            })
        );
    }

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let text = "MemTotal:       24684084 kB\nMemFree:        18314672 kB\nMemAvailable:   22014920 kB\n";
        assert_eq!(meminfo_field(text, "MemAvailable"), Some(22_014_920 * 1024));
        assert_eq!(meminfo_field(text, "MemTotal"), Some(24_684_084 * 1024));
        assert_eq!(meminfo_field(text, "Swap"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn available_memory_is_known_and_plausible_on_linux() {
        let bytes = available().expect("MemAvailable on Linux");
        // Any machine that builds this project has more than 64 MB free, and less than an
        // exabyte.
        assert!(bytes > 64 << 20 && bytes < 1 << 60, "{bytes}");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_impossible_allocation_is_an_error_not_an_abort() {
        // 4 EiB: beyond any x86-64 or AArch64 address space, so every allocator refuses it.
        assert!(try_zeroed(usize::MAX / 4).is_err());
        assert_eq!(try_zeroed(5).unwrap(), [0; 5]);
    }
}
