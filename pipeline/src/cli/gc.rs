//! `pipeline gc`: removes the cache entries no kept run refers to, and leftovers of killed
//! work, under the store's exclusive lease (waiting for the runs that hold it, or not).

use std::process::ExitCode;

use pipeline_engine::run::gc::GcOptions;
use pipeline_engine::run::store::Store;

use pipeline_engine::human::format_bytes;

pub fn gc(store: &Store, opts: &GcOptions, no_wait: bool) -> anyhow::Result<ExitCode> {
    let lease = match store.cache.try_lease_exclusive()? {
        Some(lease) => lease,
        None => {
            let (who, verb) = store_users(store);
            if no_wait {
                anyhow::bail!(
                    "the store is in use by {who}: gc removed nothing; run it again when it has finished, or without --no-wait to wait"
                );
            }
            eprintln!(
                "waiting: {who} {verb} using the store; gc starts once it is free (--no-wait fails instead)"
            );
            store.cache.lease_exclusive()?
        }
    };
    let collected = pipeline_engine::run::gc::collect(store, opts, &lease)?;
    drop(lease);
    let verb = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for what in &collected.described {
        println!("{verb} {what}");
    }
    for id in &collected.runs {
        println!("{verb} run {id}");
    }
    for dir in &collected.tmp {
        println!("{verb} stale {dir}");
    }
    let freed = format_bytes(collected.freed);
    println!(
        "{verb} {} cache entries, {} and {}; {}; kept {} cache entries",
        collected.entries.len(),
        count(collected.runs.len(), "run directory", "run directories"),
        count(
            collected.tmp.len(),
            "stale temporary directory",
            "stale temporary directories"
        ),
        if opts.dry_run {
            format!("{freed} would be freed")
        } else {
            format!("{freed} freed")
        },
        collected.kept
    );
    if collected.blobs > 0 {
        println!(
            "{verb} {} that no kept entry uses",
            count(collected.blobs, "stored blob", "stored blobs")
        );
    }
    if collected.still_linked > 0 {
        let held = format_bytes(collected.still_linked);
        if collected.linking_runs > 0 {
            println!(
                "{held} of it stays on disk, still linked from {} (add --prune-runs to remove them)",
                count(
                    collected.linking_runs,
                    "older run directory",
                    "older run directories"
                )
            );
        } else {
            println!("{held} of it stays on disk, still linked from outside the store");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs that hold the store right now, for gc's message, with the verb that agrees.
fn store_users(store: &Store) -> (String, &'static str) {
    let running: Vec<String> = store
        .runs
        .list()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.status_label() == "running")
        .map(|r| format!("{} (pid {})", r.id, r.pid))
        .collect();
    match running.as_slice() {
        [] => (
            "another pipeline process (a run starting, or a verify)".into(),
            "is",
        ),
        [one] => (format!("run {one}"), "is"),
        many => (format!("runs {}", many.join(", ")), "are"),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
