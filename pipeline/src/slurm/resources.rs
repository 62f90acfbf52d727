//! What a Slurm job asks for (partition, GPUs, time, CPUs, memory) and how often a failed
//! point is retried: from `--slurm-*` flags, the experiment's `[slurm]` table or the one in
//! `pipeline.toml`, the command line winning. Every value is checked here, once, so that a
//! bad one is refused with a line naming its flag or key before anything is submitted (and
//! so that nothing but checked text reaches `sbatch`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use pipeline_engine::diagnostic::did_you_mean;

/// The keys a `[slurm]` table may hold (each also a `--slurm-KEY` flag).
pub const KEYS: [&str; 6] = ["partition", "gres", "time", "cpus", "mem", "retries"];

/// Retries of a failed point when nothing says otherwise: one, for the node that died or the
/// job that was preempted; a point that fails twice is more likely broken than unlucky.
pub const DEFAULT_RETRIES: u32 = 1;

/// At most this many retries: more is almost surely a typo, and each costs cluster time.
pub const MAX_RETRIES: u32 = 100;

/// One or more partitions (`gpu`, `gpu,cpu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition(String);

/// Generic resources, as `--gres` takes them: `gpu:1`, `gpu:a100:2`, `gpu:1,shard:2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gres(String);

/// A time limit in one of Slurm's forms: `MINUTES`, `MINUTES:SECONDS`, `HOURS:MINUTES:SECONDS`,
/// `DAYS-HOURS`, `DAYS-HOURS:MINUTES`, `DAYS-HOURS:MINUTES:SECONDS`, or `UNLIMITED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLimit(String);

/// Memory per node: a whole number with an optional unit K, M (the default), G or T.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory(String);

/// CPUs per task: at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus(u32);

/// How many times a failed point is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries(pub u32);

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.split(',')
                .all(|p| !p.is_empty() && p.chars().all(is_name_char));
        if ok {
            Ok(Partition(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a partition name (letters, digits, `_`, `-`, `.`; several \
                 separated by commas)"
            ))
        }
    }
}

impl FromStr for Gres {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "{s:?} is not a generic resource: {why} (e.g. `gpu:1`, `gpu:a100:2`)"
            ))
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        for item in s.split(',') {
            let parts: Vec<&str> = item.split(':').collect();
            let name = parts[0];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return bad(&format!("`{name}` is not a resource name"));
            }
            let count = match parts.len() {
                1 => None,
                2 if parts[1].chars().all(|c| c.is_ascii_digit()) => Some(parts[1]),
                2 | 3 => {
                    let kind = parts[1];
                    if kind.is_empty() || !kind.chars().all(is_name_char) {
                        return bad(&format!("`{kind}` is not a resource type"));
                    }
                    parts.get(2).copied()
                }
                _ => return bad("too many `:`"),
            };
            if let Some(count) = count {
                match count.parse::<u64>() {
                    Ok(0) => return bad("a count of 0 asks for nothing"),
                    Ok(_) => {}
                    Err(_) => return bad(&format!("`{count}` is not a count")),
                }
            }
        }
        Ok(Gres(s.to_string()))
    }
}

impl FromStr for TimeLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            Err(format!(
                "{s:?} is not a time limit: use MINUTES, HOURS:MINUTES:SECONDS, \
                 DAYS-HOURS[:MINUTES[:SECONDS]] or UNLIMITED (e.g. `90`, `2:00:00`, `1-12`)"
            ))
        };
        if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinite") {
            return Ok(TimeLimit("UNLIMITED".into()));
        }
        let number = |t: &str| -> Option<u64> {
            (!t.is_empty() && t.len() <= 9 && t.chars().all(|c| c.is_ascii_digit()))
                .then(|| t.parse().ok())
                .flatten()
        };
        let (days, clock) = match s.split_once('-') {
            Some((d, rest)) => (Some(d), rest),
            None => (None, s),
        };
        let fields: Option<Vec<u64>> = clock.split(':').map(number).collect();
        let Some(fields) = fields else { return bad() };
        let seconds = match (days, fields.as_slice()) {
            (None, [m]) => m * 60,
            (None, [m, s]) => m * 60 + s,
            (None, [h, m, s]) => h * 3600 + m * 60 + s,
            (Some(d), [h]) | (Some(d), [h, _]) | (Some(d), [h, _, _]) => {
                let Some(d) = number(d) else { return bad() };
                let rest = match fields.as_slice() {
                    [_, m] => m * 60,
                    [_, m, s] => m * 60 + s,
                    _ => 0,
                };
                d * 86_400 + h * 3600 + rest
            }
            _ => return bad(),
        };
        if seconds == 0 {
            return Err(format!(
                "{s:?} is a time limit of zero: no job could run (UNLIMITED has none)"
            ));
        }
        Ok(TimeLimit(s.to_string()))
    }
}

impl FromStr for Memory {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
        let unit_len = s.len() - digits.len();
        let ok = unit_len <= 1
            && !digits.is_empty()
            && digits.len() <= 12
            && digits.chars().all(|c| c.is_ascii_digit());
        if ok {
            Ok(Memory(s.to_ascii_uppercase()))
        } else {
            Err(format!(
                "{s:?} is not an amount of memory: a whole number with an optional unit K, M \
                 (the default), G or T, e.g. `16G` (0 asks for all of a node's memory)"
            ))
        }
    }
}

impl FromStr for Cpus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<u32>() {
            Ok(0) => Err("0 CPUs: a task needs at least one".into()),
            Ok(n) => Ok(Cpus(n)),
            Err(_) => Err(format!("{s:?} is not a number of CPUs")),
        }
    }
}

impl FromStr for Retries {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<u32>() {
            Ok(n) if n <= MAX_RETRIES => Ok(Retries(n)),
            Ok(n) => Err(format!("{n} retries: at most {MAX_RETRIES}")),
            Err(_) => Err(format!("{s:?} is not a number of retries")),
        }
    }
}

/// What a job asks for, each part optional so that the sources can be layered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub partition: Option<Partition>,
    pub gres: Option<Gres>,
    pub time: Option<TimeLimit>,
    pub cpus: Option<Cpus>,
    pub mem: Option<Memory>,
    pub retries: Option<Retries>,
}

impl Resources {
    /// Each part from `self` where set, else from `below`.
    pub fn over(self, below: Resources) -> Resources {
        Resources {
            partition: self.partition.or(below.partition),
            gres: self.gres.or(below.gres),
            time: self.time.or(below.time),
            cpus: self.cpus.or(below.cpus),
            mem: self.mem.or(below.mem),
            retries: self.retries.or(below.retries),
        }
    }

    pub fn retries(&self) -> u32 {
        self.retries.map_or(DEFAULT_RETRIES, |r| r.0)
    }

    /// The `sbatch` options asking for these resources.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(Partition(p)) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(Gres(g)) = &self.gres {
            args.push(format!("--gres={g}"));
        }
        if let Some(TimeLimit(t)) = &self.time {
            args.push(format!("--time={t}"));
        }
        if let Some(Cpus(n)) = self.cpus {
            args.push(format!("--cpus-per-task={n}"));
        }
        if let Some(Memory(m)) = &self.mem {
            args.push(format!("--mem={m}"));
        }
        args
    }

    /// Reads a `[slurm]` table; `place` names it in errors (`experiments/x.toml: [slurm]`).
    pub fn from_table(table: &toml::Table, place: &str) -> Result<Resources, String> {
        let mut r = Resources::default();
        for (key, value) in table {
            if !KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "{place}: unknown key `{key}`{}; the keys are {}",
                    did_you_mean(key, KEYS),
                    KEYS.map(|k| format!("`{k}`")).join(", ")
                ));
            }
            let fail = |message: String| format!("{place} `{key}`: {message}");
            // Numbers may be written as numbers: `cpus = 4`, `time = 90` (minutes).
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) if matches!(key.as_str(), "cpus" | "retries" | "time") => {
                    i.to_string()
                }
                toml::Value::Integer(i) if key == "mem" => i.to_string(),
                other => {
                    return Err(fail(format!(
                        "must be a string{}, not {}",
                        if matches!(key.as_str(), "cpus" | "retries" | "time" | "mem") {
                            " or an integer"
                        } else {
                            ""
                        },
                        other.type_str()
                    )))
                }
            };
            match key.as_str() {
                "partition" => r.partition = Some(text.parse().map_err(fail)?),
                "gres" => r.gres = Some(text.parse().map_err(fail)?),
                "time" => r.time = Some(text.parse().map_err(fail)?),
                "cpus" => r.cpus = Some(text.parse().map_err(fail)?),
                "mem" => r.mem = Some(text.parse().map_err(fail)?),
                _ => r.retries = Some(text.parse().map_err(fail)?),
            }
        }
        Ok(r)
    }

    /// The `[slurm]` table of a TOML file (an experiment or `pipeline.toml`), if it has one.
    pub fn from_file(file: &Path) -> Result<Resources, String> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resources::default()),
            Err(e) => return Err(format!("{}: cannot read it: {e}", file.display())),
        };
        // A file that does not parse is reported by its own reader, with its position.
        let Ok(doc) = toml::from_str::<toml::Table>(&text) else {
            return Ok(Resources::default());
        };
        match doc.get("slurm") {
            None => Ok(Resources::default()),
            Some(toml::Value::Table(t)) => {
                Resources::from_table(t, &format!("{}: [slurm]", file.display()))
            }
            Some(other) => Err(format!(
                "{}: `slurm` must be a table of job resources, not {}",
                file.display(),
                other.type_str()
            )),
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args = self.sbatch_args();
        if args.is_empty() {
            f.write_str("the cluster's defaults")
        } else {
            f.write_str(&args.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_in_every_slurm_form_and_nothing_else() {
        for ok in [
            "90",
            "5:30",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:15",
            "UNLIMITED",
            "infinite",
        ] {
            assert!(ok.parse::<TimeLimit>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1h",
            "1:2:3:4",
            "-5",
            "1-",
            "a-1",
            "1-1:2:3:4",
            "2 h",
            "0",
            "0:00:00",
            "1;rm",
        ] {
            assert!(bad.parse::<TimeLimit>().is_err(), "{bad}");
        }
        assert!("0"
            .parse::<TimeLimit>()
            .unwrap_err()
            .contains("time limit of zero"));
    }

    #[test]
    fn gres_memory_cpus_partition_and_retries_refuse_what_slurm_would() {
        for ok in [
            "gpu",
            "gpu:1",
            "gpu:a100:2",
            "gpu:1,shard:2",
            "gpu:tesla-v100",
        ] {
            assert!(ok.parse::<Gres>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "gpu:0",
            "gpu:a100:x",
            "gpu::1",
            "gpu:1:2:3",
            "gpu 1",
            "g/pu:1",
        ] {
            assert!(bad.parse::<Gres>().is_err(), "{bad}");
        }
        assert_eq!("16g".parse::<Memory>(), Ok(Memory("16G".into())));
        assert!("4000".parse::<Memory>().is_ok());
        for bad in ["", "16GB", "G", "1.5G", "-1G", "16 G"] {
            assert!(bad.parse::<Memory>().is_err(), "{bad}");
        }
        assert_eq!("4".parse::<Cpus>(), Ok(Cpus(4)));
        assert!("0".parse::<Cpus>().is_err());
        assert!("-2".parse::<Cpus>().is_err());
        assert!("gpu,cpu_x".parse::<Partition>().is_ok());
        for bad in ["", "gpu,", "gpu partition", "a\nb"] {
            assert!(bad.parse::<Partition>().is_err(), "{bad:?}");
        }
        assert_eq!("3".parse::<Retries>(), Ok(Retries(3)));
        assert!("101".parse::<Retries>().is_err());
    }

    #[test]
    fn the_command_line_wins_over_the_experiment_over_the_project() {
        let project: toml::Table =
            toml::from_str("partition = \"cpu\"\ntime = 30\nmem = \"8G\"").expect("toml");
        let experiment: toml::Table =
            toml::from_str("partition = \"gpu\"\ngres = \"gpu:1\"\ncpus = 4").expect("toml");
        let flags = Resources {
            time: Some("2:00:00".parse().expect("time")),
            ..Resources::default()
        };
        let merged = flags
            .over(Resources::from_table(&experiment, "exp: [slurm]").expect("exp"))
            .over(Resources::from_table(&project, "pipeline.toml: [slurm]").expect("project"));
        assert_eq!(
            merged.sbatch_args(),
            [
                "--partition=gpu",
                "--gres=gpu:1",
                "--time=2:00:00",
                "--cpus-per-task=4",
                "--mem=8G"
            ]
        );
        assert_eq!(merged.retries(), DEFAULT_RETRIES);
    }

    #[test]
    fn a_bad_table_value_names_the_file_and_key() {
        let table: toml::Table = toml::from_str("cpus = 0").expect("toml");
        assert_eq!(
            Resources::from_table(&table, "x.toml: [slurm]").unwrap_err(),
            "x.toml: [slurm] `cpus`: 0 CPUs: a task needs at least one"
        );
        let table: toml::Table = toml::from_str("partiton = \"gpu\"").expect("toml");
        let e = Resources::from_table(&table, "x.toml: [slurm]").unwrap_err();
        assert!(
            e.starts_with("x.toml: [slurm]: unknown key `partiton`; did you mean `partition`?"),
            "{e}"
        );
        let table: toml::Table = toml::from_str("gres = 1").expect("toml");
        let e = Resources::from_table(&table, "x.toml: [slurm]").unwrap_err();
        assert_eq!(e, "x.toml: [slurm] `gres`: must be a string, not integer");
    }
}
