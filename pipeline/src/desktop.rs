//! Handing a file to the desktop (`xdg-open` on Linux, `open` on macOS), as `show --open`
//! does with a run's report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hands the file to the desktop's opener. Not finding or starting one is only a warning: the
/// path is printed either way, and `show` is often run where there is no desktop (ssh, CI).
pub fn open_in_browser(path: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let child = Command::new(opener)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("warning: cannot start `{opener}` to open the report: {e}");
            return;
        }
    };
    // Openers usually hand over to the browser and exit at once; one that keeps running is
    // left to itself rather than holding up the terminal.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                eprintln!("warning: `{opener}` could not open the report ({status})");
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                eprintln!("warning: lost track of `{opener}`: {e}");
                return;
            }
        }
    }
}
