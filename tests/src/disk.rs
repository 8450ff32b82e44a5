//! Small file systems for disk-fault tests: a tmpfs that fills up, and an ext4 on a loop device
//! whose image can be copied as a power cut would leave it. Both need root (as `make test` runs
//! in CI); without it the tests say so and fail rather than pass untested.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed (the disk-fault tests need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of a given size, unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, megabytes: u32) -> Self {
        std::fs::create_dir_all(path).unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs", &path.display().to_string()],
        );
        Self { path: path.to_path_buf() }
    }

    /// Fills the file system but for about `leave` bytes, with a file named `name` that it
    /// returns.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let filler = self.path.join(name);
        let free = free_bytes(&self.path);
        let size = free.saturating_sub(leave);
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 1 << 16];
        let mut written = 0u64;
        use std::io::Write;
        while written < size {
            let n = block.len().min((size - written) as usize);
            if file.write_all(&block[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Free bytes on the file system that holds `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

/// An ext4 file system in an image file, mounted through a loop device with a long journal
/// commit interval, so that only what a process syncs reaches the image's journal.
pub struct LoopExt4 {
    pub image: PathBuf,
    pub mount: PathBuf,
    mounted: bool,
}

impl LoopExt4 {
    pub fn create(dir: &Path, megabytes: u32) -> Self {
        let image = dir.join("disk.img");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).unwrap();
        run("truncate", &["-s", &format!("{megabytes}M"), &image.display().to_string()]);
        run("mkfs.ext4", &["-q", "-F", &image.display().to_string()]);
        run("mount", &["-o", "loop,commit=600", &image.display().to_string(), &mount.display().to_string()]);
        Self { image, mount, mounted: true }
    }

    /// Mounts an existing image (a copy) at `mount`.
    pub fn open(image: &Path, mount: &Path) -> Self {
        std::fs::create_dir_all(mount).unwrap();
        run("mount", &["-o", "loop", &image.display().to_string(), &mount.display().to_string()]);
        Self { image: image.to_path_buf(), mount: mount.to_path_buf(), mounted: true }
    }

    /// What the disk holds right now, as a power cut would leave it: a copy of the image as the
    /// loop device has written it, without the file system's unwritten state.
    pub fn crash_copy(&self, to: &Path) {
        std::fs::copy(&self.image, to).unwrap();
    }

    pub fn unmount(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.mount).status();
            self.mounted = false;
        }
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}
