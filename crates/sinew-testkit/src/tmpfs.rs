//! `Tmpfs`: a small file system of its own for a test (a full disk on
//! demand). Mounting needs root; a test that cannot mount one says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::tempdir::TempDir;

/// A tmpfs mounted in a temporary directory; unmounted (then the directory
/// removed) on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    _parent: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`: `1m`, `8m`), or says
    /// why not (not root, no `mount`).
    pub fn mount(size: &str) -> Result<Self, String> {
        let parent = TempDir::new("sinew-tmpfs");
        let path = parent.join("mnt");
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            path,
            _parent: parent,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `df` of the mount: used and available KiB.
    pub fn usage(&self) -> String {
        let out = Command::new("df")
            .args(["-k", "--output=used,avail"])
            .arg(&self.path)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let numbers: Vec<&str> = out
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match numbers.as_slice() {
            [used, avail] => format!("{used} KiB used, {avail} KiB free"),
            _ => out,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A process killed just before may still hold files for a moment.
        for _ in 0..40 {
            let unmounted = Command::new("umount")
                .arg(&self.path)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
