//! The remote protocol on object_store's in-memory store, and a backend that fails on cue.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::store::cache::Lookup;

const KEY: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

fn memory() -> Arc<dyn object_store::ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

fn remote_on(store: &Arc<dyn object_store::ObjectStore>) -> Remote {
    Remote::with_backend(
        "memory://test",
        Box::new(ObjectBackend::new(store.clone(), "team/cache")),
    )
}

fn manifest(platform: &str, files: &[(&str, &str)]) -> Manifest {
    Manifest {
        stage: "features".into(),
        experiment: "model1".into(),
        run: "r1".into(),
        platform: platform.into(),
        ..crate::store::manifest::test_manifest(files)
    }
}

/// Publishes an entry for `KEY` holding `out.bin` with `bytes`.
fn publish(cache: &Cache, bytes: &[u8], platform: &str) -> Entry {
    let lock = cache.lock(KEY).expect("lock");
    let staging = cache.stage(KEY, &lock).expect("stage");
    fs::write(staging.dir().join("out.bin"), bytes).expect("write");
    cache
        .publish(staging, manifest(platform, &[("out", "out.bin")]), &lock)
        .expect("publish")
}

/// Two stores, as on two machines: their directories (alive as long as the caller keeps
/// them) and their caches.
fn two_stores() -> (tempfile::TempDir, tempfile::TempDir, Cache, Cache) {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let (ca, cb) = (
        Cache::open(a.path()).expect("open"),
        Cache::open(b.path()).expect("open"),
    );
    (a, b, ca, cb)
}

#[test]
fn a_pushed_entry_is_fetched_checked_and_published_by_another_store() {
    let store = memory();
    let remote = remote_on(&store);
    let (_a, _b, ca, cb) = two_stores();
    let entry = publish(&ca, b"the features", "x86_64 AVX2");
    assert_eq!(
        remote.push(&entry).expect("push"),
        Pushed::Committed {
            blobs: 1,
            bytes: 12
        }
    );
    assert!(remote.has(KEY).expect("has"));
    assert_eq!(remote.keys().expect("keys"), vec![KEY.to_string()]);
    // Pushing again uploads nothing.
    assert_eq!(
        remote.push(&entry).expect("push"),
        Pushed::Present { blobs: 0, bytes: 0 }
    );

    let lock = cb.lock(KEY).expect("lock");
    match remote.fetch(&cb, KEY, &lock).expect("fetch") {
        Fetched::Entry(e) => assert_eq!(e.manifest, entry.manifest),
        Fetched::Absent => panic!("the entry was pushed"),
    }
    drop(lock);
    match cb.lookup(KEY).expect("lookup") {
        Lookup::Hit(e) => {
            assert_eq!(
                fs::read(e.path_of(&e.manifest.files[0])).expect("read"),
                b"the features"
            )
        }
        other => panic!("expected a local hit after the fetch, got {other:?}"),
    }
}

#[test]
fn a_flipped_byte_in_a_remote_blob_is_reported_removed_and_never_published() {
    let store = memory();
    let remote = remote_on(&store);
    let (_a, b, ca, cb) = two_stores();
    let entry = publish(&ca, b"the features", "x86_64 AVX2");
    remote.push(&entry).expect("push");
    let digest = entry.manifest.files[0].blake3.clone();
    let name = format!("cas/{digest}");
    let backend = ObjectBackend::new(store.clone(), "team/cache");
    let mut bytes = backend.get(&name).expect("get").expect("uploaded");
    bytes[3] ^= 0x01;
    backend.put(&name, bytes).expect("damage");

    let lock = cb.lock(KEY).expect("lock");
    let err = remote.fetch(&cb, KEY, &lock).expect_err("damaged");
    let text = err.to_string();
    assert!(
        text.contains("damaged") && text.contains(&digest[..12]),
        "{text}"
    );
    drop(lock);
    assert!(matches!(cb.lookup(KEY).expect("lookup"), Lookup::Miss));
    assert_eq!(fs::read_dir(b.path().join("tmp")).expect("tmp").count(), 0);
    // Removed from the remote, so the next push heals it.
    assert!(backend.get(&name).expect("get").is_none());
    assert_eq!(
        remote.push(&entry).expect("push"),
        Pushed::Present {
            blobs: 1,
            bytes: 12
        }
    );
    let lock = cb.lock(KEY).expect("lock");
    assert!(matches!(
        remote.fetch(&cb, KEY, &lock).expect("fetch"),
        Fetched::Entry(_)
    ));
}

#[test]
fn a_damaged_remote_manifest_is_refused() {
    let store = memory();
    let remote = remote_on(&store);
    let backend = ObjectBackend::new(store.clone(), "team/cache");
    backend
        .put(&format!("ac/{KEY}"), b"# blake3 00\nformat = 3\n".to_vec())
        .expect("put");
    let b = tempfile::tempdir().expect("b");
    let cb = Cache::open(b.path()).expect("open");
    let lock = cb.lock(KEY).expect("lock");
    let err = remote.fetch(&cb, KEY, &lock).expect_err("damaged");
    assert!(err.to_string().contains("manifest"), "{err}");
    assert!(matches!(cb.lookup(KEY).expect("lookup"), Lookup::Miss));
}

#[test]
fn the_loser_of_a_race_keeps_the_winners_entry_and_reports_other_bytes() {
    let store = memory();
    let remote = remote_on(&store);
    let (_a, _b, ca, cb) = two_stores();
    let first = publish(&ca, b"weights computed with AVX-512", "x86_64 AVX-512");
    let second = publish(&cb, b"weights computed with AVX2!!", "x86_64 AVX2");
    assert!(matches!(
        remote.push(&first).expect("push"),
        Pushed::Committed { .. }
    ));
    match remote.push(&second).expect("push") {
        Pushed::Differs(finding) => {
            assert_eq!(finding.ours, "x86_64 AVX2");
            assert_eq!(finding.theirs, "x86_64 AVX-512");
            assert_eq!(finding.files.len(), 1);
            let text = finding.to_string();
            assert!(
                text.contains("features") && text.contains("AVX2") && text.contains("AVX-512"),
                "{text}"
            );
        }
        other => panic!("expected a finding, got {other:?}"),
    }
    // The winner's manifest is what the remote serves.
    let (_, served) = remote.manifest(KEY).expect("manifest").expect("present");
    assert_eq!(served.files[0].blake3, first.manifest.files[0].blake3);
}

/// Fails every operation after `budget` successful ones, like a server killed mid-push.
struct Dying {
    inner: ObjectBackend,
    budget: AtomicUsize,
}

impl Dying {
    fn spend(&self) -> Result<(), BackendError> {
        let left = self.budget.load(Ordering::SeqCst);
        if left == 0 {
            return Err(BackendError::Unavailable("connection refused".into()));
        }
        self.budget.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
}

impl Backend for Dying {
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.spend()?;
        self.inner.put(name, bytes)
    }
    fn create(&self, name: &str, bytes: Vec<u8>) -> Result<Created, BackendError> {
        self.spend()?;
        self.inner.create(name, bytes)
    }
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.spend()?;
        self.inner.get(name)
    }
    fn size(&self, name: &str) -> Result<Option<u64>, BackendError> {
        self.spend()?;
        self.inner.size(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        self.spend()?;
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.spend()?;
        self.inner.delete(name)
    }
}

#[test]
fn a_push_cut_off_anywhere_leaves_no_entry_and_the_next_push_finishes() {
    let a = tempfile::tempdir().expect("a");
    let ca = Cache::open(a.path()).expect("open");
    let lock = ca.lock(KEY).expect("lock");
    let staging = ca.stage(KEY, &lock).expect("stage");
    fs::write(staging.dir().join("x.bin"), b"first output").expect("write");
    fs::write(staging.dir().join("y.bin"), b"second output").expect("write");
    let entry = ca
        .publish(
            staging,
            manifest("x86_64 AVX2", &[("x", "x.bin"), ("y", "y.bin")]),
            &lock,
        )
        .expect("publish");
    drop(lock);
    // A push takes 2 size checks, 2 uploads and 1 create: cut it after each of them.
    for budget in 0..5 {
        let store = memory();
        let dying = Remote::with_backend(
            "memory://dying",
            Box::new(Dying {
                inner: ObjectBackend::new(store.clone(), ""),
                budget: AtomicUsize::new(budget),
            }),
        );
        let err = dying.push(&entry).expect_err("the server died");
        assert!(err.to_string().contains("connection refused"), "{err}");
        let remote = remote_on_prefix(&store, "");
        assert!(!remote.has(KEY).expect("has"), "budget {budget}: an entry");
        let b = tempfile::tempdir().expect("b");
        let cb = Cache::open(b.path()).expect("open");
        let lock = cb.lock(KEY).expect("lock");
        assert!(matches!(
            remote.fetch(&cb, KEY, &lock).expect("fetch"),
            Fetched::Absent
        ));
        drop(lock);
        assert!(matches!(
            remote.push(&entry).expect("push"),
            Pushed::Committed { .. }
        ));
        let lock = cb.lock(KEY).expect("lock");
        assert!(matches!(
            remote.fetch(&cb, KEY, &lock).expect("fetch"),
            Fetched::Entry(_)
        ));
    }
}

fn remote_on_prefix(store: &Arc<dyn object_store::ObjectStore>, prefix: &str) -> Remote {
    Remote::with_backend(
        "memory://test",
        Box::new(ObjectBackend::new(store.clone(), prefix)),
    )
}

#[test]
fn remote_gc_keeps_roots_and_recent_pushes_and_names_what_it_removes() {
    let store = memory();
    let remote = remote_on(&store);
    let a = tempfile::tempdir().expect("a");
    let ca = Cache::open(a.path()).expect("open");
    let entry = publish(&ca, b"old result", "x86_64 AVX2");
    remote.push(&entry).expect("push");

    // Within the grace period nothing goes, root or not.
    let none = BTreeSet::new();
    let kept = remote.collect(&none, 3600, false).expect("gc");
    assert!(kept.entries.is_empty() && kept.blobs == 0);
    // A root is kept whatever its age.
    let roots: BTreeSet<String> = [KEY.to_string()].into();
    let kept = remote.collect(&roots, -1, false).expect("gc");
    assert_eq!((kept.kept, kept.blobs), (1, 0));
    // Past the grace period, not a root: a dry run names it and removes nothing.
    let dry = remote.collect(&none, -1, true).expect("gc");
    assert_eq!(dry.entries.len(), 1);
    assert!(
        dry.entries[0].contains("stage features of model1"),
        "{:?}",
        dry.entries
    );
    assert_eq!((dry.blobs, dry.bytes), (1, 10));
    assert!(remote.has(KEY).expect("has"));
    let done = remote.collect(&none, -1, false).expect("gc");
    assert_eq!(done.entries, dry.entries);
    assert!(!remote.has(KEY).expect("has"));
    assert!(ObjectBackend::new(store, "team/cache")
        .list("cas")
        .expect("list")
        .is_empty());
}

/// Bytes of every blob under a store's `cas/`.
fn cas_bytes(cache: &Cache) -> u64 {
    let blobs = cache.blobs();
    blobs
        .digests()
        .expect("digests")
        .iter()
        .map(|d| fs::metadata(blobs.path(d)).expect("blob").len())
        .sum()
}

#[test]
fn an_output_sharing_most_bytes_with_its_input_is_stored_as_parts_and_travels_whole() {
    const OTHER: &str = "cd12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";
    let (a, b, ca, cb) = two_stores();
    // A "model" of 3 MB, and a "trained model": the same but for 4 KB near its end.
    let base: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut trained = base.clone();
    for b in &mut trained[2_900_000..2_904_096] {
        *b ^= 0x5a;
    }
    let model = publish(&ca, &base, "x86_64 AVX2");
    let before = cas_bytes(&ca);
    let lock = ca.lock(OTHER).expect("lock");
    let staging = ca.stage(OTHER, &lock).expect("stage");
    fs::write(staging.dir().join("out.bin"), &trained).expect("write");
    let record = &model.manifest.files[0];
    let input = crate::store::cache::Base {
        path: model.path_of(record),
        size: record.size,
        digest: record.blake3.clone(),
        parts: record.stored(),
    };
    let mut m = manifest("x86_64 AVX2", &[("out", "out.bin")]);
    m.stage = "train".into();
    let entry = ca
        .publish_sharing(staging, m, &lock, &[input], None)
        .expect("publish");
    drop(lock);
    assert!(entry.manifest.files[0].is_assembled(), "stored as parts");
    let added = cas_bytes(&ca) - before;
    assert!(
        added < 10_000,
        "the trained file added {added} bytes to the store, not its 3 MB"
    );
    assert!(matches!(ca.lookup(OTHER).expect("lookup"), Lookup::Hit(_)));
    let whole = a.path().join("whole.bin");
    ca.assemble(&entry.manifest.files[0], &whole)
        .expect("assemble");
    assert_eq!(fs::read(&whole).expect("read"), trained);

    // Pushed and fetched by a store that has neither: the parts' blobs travel, checked.
    let store = memory();
    let remote = remote_on(&store);
    remote.push(&entry).expect("push");
    let lock = cb.lock(OTHER).expect("lock");
    let fetched = match remote.fetch(&cb, OTHER, &lock).expect("fetch") {
        Fetched::Entry(e) => e,
        Fetched::Absent => panic!("pushed"),
    };
    let copy = b.path().join("copy.bin");
    cb.assemble(&fetched.manifest.files[0], &copy)
        .expect("assemble");
    assert_eq!(fs::read(&copy).expect("read"), trained);
}

#[test]
fn a_remote_manifest_cut_in_half_is_removed_and_the_next_push_replaces_it() {
    let store = memory();
    let remote = remote_on(&store);
    let backend = ObjectBackend::new(store.clone(), "team/cache");
    let (_a, _b, ca, cb) = two_stores();
    let entry = publish(&ca, b"the features", "x86_64 AVX2");
    remote.push(&entry).expect("push");
    let name = format!("ac/{KEY}");
    let whole = backend.get(&name).expect("get").expect("pushed");
    let cut = whole[..whole.len() / 2].to_vec();

    // Found damaged by a fetch: reported and removed, so the recomputation's push commits.
    backend.put(&name, cut.clone()).expect("cut");
    let lock = cb.lock(KEY).expect("lock");
    let err = remote
        .fetch(&cb, KEY, &lock)
        .expect_err("damaged")
        .to_string();
    assert!(err.contains("damaged") && err.contains("removed"), "{err}");
    drop(lock);
    assert!(backend.get(&name).expect("get").is_none());
    let recomputed = publish(&cb, b"the features", "x86_64 AVX2");
    assert_eq!(
        remote.push(&recomputed).expect("push"),
        Pushed::Committed { blobs: 0, bytes: 0 }
    );
    assert_eq!(backend.get(&name).expect("get"), Some(whole.clone()));

    // Found damaged by a push (no fetch before it): the push replaces it.
    backend.put(&name, cut).expect("cut");
    assert_eq!(
        remote.push(&entry).expect("push"),
        Pushed::Committed { blobs: 0, bytes: 0 }
    );
    assert_eq!(backend.get(&name).expect("get"), Some(whole));
}
