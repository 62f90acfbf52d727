//! End-to-end tests of which `pipeline.toml` is obeyed: a file someone else owns in a
//! world-writable folder above the project is refused when it sets a remote (naming the file
//! and the key, and the command that trusts it), obeyed once that command has run; a file of
//! your own is obeyed as before, unless anyone may write to it. Making a file someone else's
//! needs root (`chown`); as another user those tests are recorded as skipped.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{skip, Project, USAGE};

/// `nobody`, the user another user's file belongs to here.
const OTHER_UID: u32 = 65534;

/// A shared folder (mode 1777 as /tmp, or 0777) holding `pipeline.toml` with `settings`,
/// and a project folder inside it without one, run from with its own trust list.
struct Shared {
    p: Project,
}

impl Shared {
    fn new(folder_mode: u32, settings: &str) -> Shared {
        let p = Project::new();
        let shared = p.path().join("shared");
        fs::create_dir_all(shared.join("proj")).expect("folders");
        fs::set_permissions(&shared, fs::Permissions::from_mode(folder_mode)).expect("chmod");
        fs::write(shared.join("pipeline.toml"), settings).expect("pipeline.toml");
        fs::write(
            shared.join("proj/exp.toml"),
            "name = \"e\"\n[stages.gen]\nkind = \"shell\"\ncommand = \"echo hi > out.txt\"\n\
             outputs = [\"out.txt\"]\n",
        )
        .expect("exp.toml");
        Shared { p }
    }

    fn shared(&self) -> PathBuf {
        self.p.path().join("shared")
    }

    fn settings_file(&self) -> PathBuf {
        self.shared().join("pipeline.toml")
    }

    /// Where a hostile `remote` would send results.
    fn stolen(&self) -> PathBuf {
        self.p.path().join("stolen")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.p.command(args);
        cmd.current_dir(self.shared().join("proj"))
            .env("XDG_CONFIG_HOME", self.p.path().join("home/.config"))
            .env_remove("SUDO_UID");
        cmd
    }

    /// Runs; returns the exit code and stderr + stdout.
    fn exits(&self, cmd: &mut Command) -> (Option<i32>, String) {
        let out = cmd.output().expect("pipeline runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code(), text)
    }
}

/// Whether this process may give a file to another user; else records the test as skipped.
fn can_chown() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip("making a pipeline.toml another user's needs root (chown)");
    }
    root
}

fn give_to_other_user(path: &Path) {
    std::os::unix::fs::chown(path, Some(OTHER_UID), Some(OTHER_UID)).expect("chown");
}

#[test]
fn another_users_remote_is_refused_until_its_folder_is_trusted() {
    if !can_chown() {
        return;
    }
    let s = Shared::new(0o777, "");
    let remote = format!("file://{}", s.stolen().display());
    fs::write(
        s.settings_file(),
        format!("device = \"cpu\"\nremote = \"{remote}\"\n"),
    )
    .expect("pipeline.toml");
    give_to_other_user(&s.settings_file());

    let expected = format!(
        "{}: `remote` refused: it is owned by uid {OTHER_UID}, not by you (uid 0), and it could \
         send your results elsewhere or run commands; if you trust it, run `pipeline config \
         --trust {}`",
        s.settings_file().display(),
        s.shared().display()
    );
    let (code, text) = s.exits(&mut s.command(&["run", "--allow-shell", "exp.toml"]));
    assert_eq!(code, Some(USAGE), "{text}");
    assert!(text.contains(&expected), "{text}");
    assert!(!s.stolen().exists(), "nothing was sent to the remote");
    let (code, text) = s.exits(&mut s.command(&["config"]));
    assert_eq!(code, Some(USAGE), "`config` refuses it too: {text}");

    // The step the line names, as it says it.
    let trust = s.shared().display().to_string();
    let (code, text) = s.exits(&mut s.command(&["config", "--trust", &trust]));
    assert_eq!(code, Some(0), "{text}");
    let list = s.p.path().join("home/.config/pipeline/trusted.toml");
    let listed = fs::read_to_string(&list).expect("the trust list");
    let canonical = fs::canonicalize(s.shared()).expect("canonical");
    assert!(
        listed.contains(&format!("{:?}", canonical.display().to_string())),
        "{listed}"
    );
    let (code, text) = s.exits(&mut s.command(&["run", "--allow-shell", "exp.toml"]));
    assert_eq!(code, Some(0), "{text}");
    let sent = fs::read_dir(s.stolen().join("cas")).map_or(0, |d| d.count());
    assert!(sent > 0, "the trusted file's remote received the results");
}

#[test]
fn another_users_file_may_still_set_the_device_and_sudo_makes_it_yours() {
    if !can_chown() {
        return;
    }
    let s = Shared::new(0o1777, "device = \"cpu\"\n");
    give_to_other_user(&s.settings_file());
    let (code, text) = s.exits(&mut s.command(&["config", "device"]));
    assert_eq!((code, text.trim()), (Some(0), "cpu"));

    fs::write(s.settings_file(), "artifacts = \"elsewhere\"\n").expect("pipeline.toml");
    give_to_other_user(&s.settings_file());
    let (code, text) = s.exits(&mut s.command(&["config"]));
    assert_eq!(code, Some(USAGE), "{text}");
    assert!(text.contains("`artifacts` refused"), "{text}");
    // Root by sudo from the file's owner: the file is the sudoer's own, as git decides.
    let (code, text) = s.exits(
        s.command(&["config", "artifacts"])
            .env("SUDO_UID", OTHER_UID.to_string()),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.trim().ends_with("/shared/elsewhere"), "{text}");
}

#[test]
fn your_own_file_is_obeyed_unless_anyone_may_write_to_it() {
    let s = Shared::new(0o777, "");
    let remote = format!("file://{}", s.stolen().display());
    fs::write(s.settings_file(), format!("remote = \"{remote}\"\n")).expect("pipeline.toml");
    let (code, text) = s.exits(&mut s.command(&["config", "remote"]));
    assert_eq!((code, text.trim()), (Some(0), remote.as_str()));

    fs::set_permissions(s.settings_file(), fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, text) = s.exits(&mut s.command(&["config", "remote"]));
    assert_eq!(code, Some(USAGE), "{text}");
    assert!(
        text.contains("`remote` refused: anyone may write to it (mode 666)"),
        "{text}"
    );
}
