//! A process's sled database, and what "durable" means for it.
//!
//! sled 0.34 writes its log with `sync_file_range`, which pushes the written pages to the disk
//! but neither the file's new size and other metadata nor the disk's own cache. On ext4 every
//! record acknowledged after such a flush was lost when the disk's contents were cut at that
//! moment (tried on a loop-mounted ext4 with a crash-consistent copy of the device: 40 orders
//! answered `202`, 3 found afterwards). [`Db::make_durable`] adds the `fdatasync` that makes a
//! flush durable; it is what every process calls before anything leaves it (an answer, an
//! ack, a publish).
//!
//! Opening is careful too:
//! - A folder is opened by one process at a time: a lock file, taken before sled opens, turns
//!   a second process into one clear error instead of sled's.
//! - sled writes a snapshot as `snap.<lsn>.generating` and renames it when complete, but reads
//!   any `snap.*` file, so an empty one left by a start on a full disk made every later start
//!   fail with "Read corrupted data". Such files are incomplete by construction and removed.
//! - The files sled creates, and the folder, are synced once after opening, so that a new
//!   store survives a power loss as a store.

use std::fs::File;
use std::path::{Path, PathBuf};

/// What can go wrong with a store's files.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot use the data folder {dir}: {source}")]
    Folder { dir: PathBuf, source: std::io::Error },
    #[error("the data folder {dir} is in use by another process (its lock is taken)")]
    Locked { dir: PathBuf },
    #[error("cannot open the store in {dir}: {source}")]
    Open { dir: PathBuf, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("cannot make the store durable: {0}")]
    Sync(std::io::Error),
}

/// An open sled database with its lock and the handle its flushes are made durable through.
pub struct Db {
    sled: sled::Db,
    /// Names this store, so that a queue it consumes is never taken over by a process with
    /// another store (see `bus::session`).
    id: String,
    /// sled's data file, kept open to `fdatasync` it after every flush.
    data_file: File,
    /// Held for the life of the process: the folder's lock.
    _lock: File,
}

impl Db {
    /// Opens (or creates) the store in `dir`, with the settings every sagaflow store uses.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let folder = |source| DbError::Folder { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(folder)?;
        let lock = lock(dir)?;
        remove_incomplete_snapshots(dir).map_err(folder)?;
        let sled = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| DbError::Open { dir: dir.to_path_buf(), source })?;
        let data_file = File::open(dir.join("db")).map_err(folder)?;
        let id = store_id(dir).map_err(folder)?;
        sync_folder_and_files(dir).map_err(DbError::Sync)?;
        Ok(Self { sled, data_file, id, _lock: lock })
    }

    /// The store's id, made when it was created.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn sled(&self) -> &sled::Db {
        &self.sled
    }

    /// Flushes sled and makes the flush durable. Runs on the calling thread: a store has one
    /// writer, and concurrent `flush_async` calls can deadlock in sled 0.34 (sled #1308).
    pub fn make_durable(&self) -> Result<(), DbError> {
        self.sled.flush()?;
        // fdatasync also writes the metadata needed to read the data back (the file's size),
        // which sync_file_range does not.
        self.data_file.sync_data().map_err(DbError::Sync)
    }
}

/// Takes `dir/lock` exclusively, or says that another process has it.
fn lock(dir: &Path) -> Result<File, DbError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| DbError::Folder { dir: dir.to_path_buf(), source })?;
    // SAFETY: flock on a file descriptor we own; it does not touch memory.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        return Err(DbError::Locked { dir: dir.to_path_buf() });
    }
    Ok(file)
}

/// The store's id from `dir/store-id`, made (and synced with the rest) on first open.
fn store_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("store-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

/// Removes `snap.*.generating`: snapshots sled began and never finished.
fn remove_incomplete_snapshots(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing an incomplete snapshot left by an earlier start");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Syncs every regular file in `dir` and `dir` itself (and its parent, which holds its entry).
fn sync_folder_and_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_opener_is_told_the_folder_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let first = Db::open(dir.path()).unwrap();
        assert!(matches!(Db::open(dir.path()), Err(DbError::Locked { .. })));
        drop(first);
        Db::open(dir.path()).unwrap();
    }

    #[test]
    fn an_empty_snapshot_left_by_a_failed_start_does_not_stop_the_next() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.sled().insert("k", "v").unwrap();
            db.make_durable().unwrap();
        }
        // What a start on a full disk leaves behind.
        std::fs::write(dir.path().join("snap.FFFFFFFFFFFFFFFF.generating"), b"").unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.sled().get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_store_keeps_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let id = Db::open(dir.path()).unwrap().id().to_owned();
        assert_eq!(Db::open(dir.path()).unwrap().id(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Db::open(other.path()).unwrap().id(), id);
    }
}
