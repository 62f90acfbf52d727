//! Tests of the cache: publishing, lookups that find damage, leases and leftovers.

use super::*;
use crate::store::files::make_writable;
use crate::store::manifest::test_manifest as manifest;
use crate::store::manifest::STORE_FORMAT;

const KEY: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

#[test]
fn a_file_stored_as_parts_leaves_its_whole_copy_where_asked() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    // A 2 MB "model" as an earlier entry, and a "trained model" differing in 1 kB.
    let model: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let mut trained = model.clone();
    for b in &mut trained[1_000_000..1_001_024] {
        *b ^= 0x33;
    }
    let lock = cache.lock(KEY).expect("lock");
    let staging = cache.stage(KEY, &lock).expect("stage");
    fs::write(staging.dir().join("model.bin"), &model).expect("write");
    let base = cache
        .publish(staging, manifest(&[("model", "model.bin")]), &lock)
        .expect("publish");
    drop(lock);
    let record = &base.manifest.files[0];
    let input = Base {
        path: base.path_of(record),
        size: record.size,
        digest: record.blake3.clone(),
        parts: record.stored(),
    };

    let other = "cd".repeat(32);
    let keep = root.path().join("kept");
    for keep_whole in [None, Some(keep.as_path())] {
        let lock = cache.lock(&other).expect("lock");
        let staging = cache.stage(&other, &lock).expect("stage");
        let staged = staging.dir().join("model.bin");
        fs::write(&staged, &trained).expect("write");
        let entry = cache
            .publish_sharing(
                staging,
                manifest(&[("model", "model.bin")]),
                &lock,
                std::slice::from_ref(&input),
                keep_whole,
            )
            .expect("publish");
        let file = &entry.manifest.files[0];
        assert!(file.is_assembled(), "stored as parts");
        assert_eq!(file.blake3, blake3::hash(&trained).to_hex().as_str());
        assert!(!staged.exists());
        match keep_whole {
            None => assert!(!keep.exists()),
            Some(keep) => {
                let kept = keep.join("model.bin");
                assert_eq!(fs::read(&kept).expect("kept"), trained);
                assert!(fs::metadata(&kept).expect("meta").permissions().readonly());
            }
        }
        drop(lock);
        cache.evict(&other).expect("evict");
    }
}

#[test]
fn publish_then_hit_with_digests() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    let lock = cache.lock(KEY).expect("lock");
    let staging = cache.stage(KEY, &lock).expect("stage");
    fs::write(staging.dir().join("out.txt"), b"hello").expect("write");
    let entry = cache
        .publish(staging, manifest(&[("out", "out.txt")]), &lock)
        .expect("publish");
    assert_eq!(entry.manifest.files[0].size, 5);
    assert_eq!(
        entry.manifest.files[0].blake3,
        blake3::hash(b"hello").to_hex().as_str()
    );
    match cache.lookup(KEY).expect("lookup") {
        Lookup::Hit(e) => assert_eq!(e.manifest, entry.manifest),
        other => panic!("expected a hit, got {other:?}"),
    }
    assert_eq!(cache.keys().expect("keys"), vec![KEY.to_string()]);
    assert_eq!(
        fs::read_dir(root.path().join("tmp")).expect("tmp").count(),
        0,
        "nothing left in tmp"
    );
}

#[test]
fn failed_work_leaves_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let lock = cache.lock(KEY).expect("lock");
    {
        let staging = cache.stage(KEY, &lock).expect("stage");
        fs::write(staging.dir().join("half.txt"), b"partial").expect("write");
        // Dropped without publishing, as when a stage returns an error.
    }
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    assert_eq!(
        fs::read_dir(root.path().join("tmp")).expect("tmp").count(),
        0
    );
}

#[test]
fn leftovers_of_a_killed_computation_are_never_read_and_get_cleaned() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let leftover = root.path().join("tmp").join(format!("{KEY}.999.1"));
    fs::create_dir_all(&leftover).expect("mkdir");
    fs::write(leftover.join("out.txt"), b"half").expect("write");
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    let lock = cache.lock(KEY).expect("lock");
    let _staging = cache.stage(KEY, &lock).expect("stage");
    assert!(!leftover.exists());
}

#[test]
fn a_flipped_byte_is_detected_and_the_entry_dropped() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let lock = cache.lock(KEY).expect("lock");
    let staging = cache.stage(KEY, &lock).expect("stage");
    fs::write(staging.dir().join("out.txt"), b"hello").expect("write");
    let entry = cache
        .publish(staging, manifest(&[("out", "out.txt")]), &lock)
        .expect("publish");
    let path = entry.dir.join("out.txt");
    make_writable(&entry.dir);
    fs::write(&path, b"hellp").expect("corrupt");
    match cache.lookup(KEY).expect("lookup") {
        Lookup::Damaged { problems } => {
            assert_eq!(
                problems,
                vec!["out.txt does not match its digest".to_string()]
            )
        }
        other => panic!("expected damage, got {other:?}"),
    }
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
}

fn published(cache: &Cache) -> Entry {
    let lock = cache.lock(KEY).expect("lock");
    let staging = cache.stage(KEY, &lock).expect("stage");
    fs::write(staging.dir().join("out.txt"), b"hello").expect("write");
    let mut m = manifest(&[("out", "out.txt")]);
    m.metrics.insert("test_accuracy".into(), 0.75);
    cache.publish(staging, m, &lock).expect("publish")
}

fn rewrite_manifest(entry: &Entry, edit: impl FnOnce(String) -> String) {
    let path = entry.dir.join(MANIFEST);
    make_writable(&entry.dir);
    let text = fs::read_to_string(&path).expect("manifest");
    fs::write(&path, edit(text)).expect("write");
}

fn damage_of(cache: &Cache) -> Vec<String> {
    match cache.lookup(KEY).expect("lookup") {
        Lookup::Damaged { problems } => problems,
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn the_manifest_is_read_only_and_carries_its_own_digest() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let entry = published(&cache);
    let path = entry.dir.join(MANIFEST);
    assert!(fs::metadata(&path)
        .expect("manifest")
        .permissions()
        .readonly());
    let text = fs::read_to_string(&path).expect("manifest");
    let (first, body) = text.split_once('\n').expect("two parts");
    assert_eq!(
        first,
        format!("# blake3 {}", blake3::hash(body.as_bytes()).to_hex())
    );
    let parsed: Manifest = toml::from_str(body).expect("the rest is the TOML manifest");
    assert_eq!(parsed, entry.manifest);
    assert_eq!(parsed.format, STORE_FORMAT);
}

#[test]
fn an_edited_metric_is_damage() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let entry = published(&cache);
    rewrite_manifest(&entry, |t| {
        assert!(t.contains("test_accuracy = 0.75"), "{t}");
        t.replace("test_accuracy = 0.75", "test_accuracy = 0.99")
    });
    assert_eq!(
        damage_of(&cache),
        ["manifest.toml does not match its own digest"]
    );
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
}

#[test]
fn a_manifest_that_does_not_parse_or_belongs_elsewhere_is_damage() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");

    // A consistent digest over TOML that does not parse: a bug's output, not an edit.
    let entry = published(&cache);
    rewrite_manifest(&entry, |_| {
        let body = "format = 3\nkey = [\n";
        format!(
            "# blake3 {}\n{body}",
            blake3::hash(body.as_bytes()).to_hex()
        )
    });
    let problems = damage_of(&cache);
    assert!(
        problems[0].starts_with("manifest.toml does not parse: "),
        "{problems:?}"
    );

    // Intact, but another key's: moved or copied in by hand.
    let entry = published(&cache);
    rewrite_manifest(&entry, |t| {
        let (_, body) = t.split_once('\n').expect("two parts");
        let body = body.replace(KEY, &"0".repeat(64));
        format!(
            "# blake3 {}\n{body}",
            blake3::hash(body.as_bytes()).to_hex()
        )
    });
    assert_eq!(
        damage_of(&cache),
        ["manifest.toml belongs to another entry (000000000000)"]
    );

    let entry = published(&cache);
    rewrite_manifest(&entry, |t| t.split_once('\n').expect("lines").1.to_string());
    assert_eq!(damage_of(&cache), ["manifest.toml has no digest line"]);
}

#[test]
fn entries_of_the_previous_format_are_misses_and_get_replaced() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let entry = published(&cache);
    // What format 1 wrote: the bare TOML, no digest line.
    rewrite_manifest(&entry, |t| {
        t.split_once('\n')
            .expect("lines")
            .1
            .replace("format = 3", "format = 1")
    });
    assert!(cache.read_entry(KEY).expect("read").is_none());
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Miss));
    let fresh = published(&cache);
    assert!(matches!(cache.lookup(KEY).expect("lookup"), Lookup::Hit(_)));
    assert_eq!(fresh.manifest.format, STORE_FORMAT);
}

#[test]
fn gc_excludes_runs_and_runs_share() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let a = cache.try_lease().expect("lease").expect("free store");
    let b = cache
        .try_lease()
        .expect("lease")
        .expect("runs share the store");
    assert!(cache.try_lease_exclusive().expect("lease").is_none());
    drop(a);
    assert!(cache.try_lease_exclusive().expect("lease").is_none());
    drop(b);
    let gc = cache
        .try_lease_exclusive()
        .expect("lease")
        .expect("no run left");
    assert!(
        cache.try_lease().expect("lease").is_none(),
        "a run waits for gc"
    );
    drop(gc);
    assert!(cache.try_lease().expect("lease").is_some());
}

#[test]
fn stale_tmp_spares_a_key_being_computed() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(root.path()).expect("open");
    let other = "cd".repeat(32);
    let dead = root.path().join("tmp").join(format!("{other}.999999.1"));
    let evicted = root
        .path()
        .join("tmp")
        .join(format!("{other}.evicted.999999.2"));
    fs::create_dir_all(&dead).expect("mkdir");
    fs::create_dir_all(&evicted).expect("mkdir");
    let lock = cache.lock(KEY).expect("lock");
    let staging = cache.stage(KEY, &lock).expect("stage");
    // Another process's view: the key's lock is held by this one, on another descriptor.
    let gc = cache.lease_exclusive().expect("lease");
    let stale = cache.stale_tmp(&gc).expect("stale");
    assert_eq!(stale, vec![dead, evicted]);
    assert!(!stale.iter().any(|p| p == staging.dir()));
}
