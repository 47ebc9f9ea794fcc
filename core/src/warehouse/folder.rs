//! The local folder the Parquet files go to (`TOUCHPOINT_WAREHOUSE_DIR`). A file appears whole or
//! not at all: written under a temporary name, flushed to disk, renamed, and its folder flushed.
//! One writer at a time per folder: an exclusive lock on `.touchpoint-warehouse.lock`, held for a
//! step, keeps two processes (a server and `touchpoint warehouse sync`) from interleaving.

use super::files::{PlannedFile, parse_part_name};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the folder.
pub const LOCK_FILE: &str = ".touchpoint-warehouse.lock";

/// A warehouse folder.
#[derive(Debug, Clone)]
pub struct Folder {
    root: PathBuf,
}

/// Held while a step writes; dropping it releases the folder.
#[derive(Debug)]
pub struct FolderLock(#[allow(dead_code)] File);

/// What a folder holds that is not the lock: committed-looking part files and leftovers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Part files (`…/part-<first>-<last>.parquet`), relative paths.
    pub parts: Vec<String>,
    /// Temporary files of interrupted writes, relative paths.
    pub temps: Vec<String>,
}

impl Folder {
    /// The folder at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Folder {
        Folder { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Waits for the folder's exclusive lock.
    pub async fn lock(&self) -> io::Result<FolderLock> {
        let root = self.root.clone();
        blocking(move || {
            fs::create_dir_all(&root)?;
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(root.join(LOCK_FILE))?;
            file.lock()?;
            Ok(FolderLock(file))
        })
        .await
    }

    /// Writes each file durably: temporary name, fsync, rename over any older copy, then fsync
    /// of every folder on the way up to the root so the names survive a power cut too.
    pub async fn write(&self, files: Vec<PlannedFile>) -> io::Result<()> {
        let root = self.root.clone();
        blocking(move || {
            let mut dirs = BTreeSet::new();
            for f in &files {
                let full = root.join(&f.path);
                let parent = full.parent().unwrap_or(&root).to_owned();
                fs::create_dir_all(&parent)?;
                let name = full
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("part.parquet");
                let tmp = parent.join(format!(".{name}.tmp"));
                let mut out = File::create(&tmp)?;
                out.write_all(&f.bytes)?;
                out.sync_all()?;
                drop(out);
                fs::rename(&tmp, &full)?;
                let mut dir = parent.as_path();
                while dir.starts_with(&root) {
                    dirs.insert(dir.to_owned());
                    match dir.parent() {
                        Some(p) if dir != root => dir = p,
                        _ => break,
                    }
                }
            }
            for dir in dirs.iter().rev() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    /// Checks the folder takes a write: creates it if needed, writes, syncs and removes a small
    /// probe file. A folder that cannot (read-only, full, unmounted) is an outage, not a message's
    /// fault.
    pub async fn probe(&self) -> io::Result<()> {
        let root = self.root.clone();
        blocking(move || {
            fs::create_dir_all(&root)?;
            let probe = root.join(".touchpoint-warehouse.probe");
            let mut f = File::create(&probe)?;
            f.write_all(b"probe")?;
            f.sync_all()?;
            drop(f);
            fs::remove_file(&probe)
        })
        .await
    }

    /// Every part file and leftover temporary file under the root.
    pub async fn list(&self) -> io::Result<Listing> {
        let root = self.root.clone();
        blocking(move || {
            let mut listing = Listing::default();
            if !root.exists() {
                return Ok(listing);
            }
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                for entry in fs::read_dir(&dir)? {
                    let entry = entry?;
                    let path = entry.path();
                    let kind = entry.file_type()?;
                    if kind.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let rel = relative(&root, &path);
                    if name.starts_with(".part-") && name.ends_with(".tmp") {
                        listing.temps.push(rel);
                    } else if parse_part_name(&name).is_some() {
                        listing.parts.push(rel);
                    }
                }
            }
            listing.parts.sort();
            listing.temps.sort();
            Ok(listing)
        })
        .await
    }

    /// Removes files (relative paths); ones already gone are fine.
    pub async fn remove(&self, paths: Vec<String>) -> io::Result<()> {
        let root = self.root.clone();
        blocking(move || {
            for p in paths {
                match fs::remove_file(root.join(&p)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> PlannedFile {
        PlannedFile {
            path: path.into(),
            collection: "events".into(),
            rows: 1,
            bytes: b"PAR1".to_vec(),
        }
    }

    #[tokio::test]
    async fn files_are_written_whole_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::new(dir.path().join("wh"));
        let _lock = folder.lock().await.unwrap();
        folder
            .write(vec![
                file("events/date=2026-12-01/event=a/part-000000000001-000000000002.parquet"),
                file("pages/date=2026-12-01/part-000000000001-000000000002.parquet"),
            ])
            .await
            .unwrap();
        std::fs::write(
            dir.path()
                .join("wh/pages/date=2026-12-01/.part-000000000003-000000000004.parquet.tmp"),
            b"half",
        )
        .unwrap();
        folder.probe().await.unwrap();
        let listing = folder.list().await.unwrap();
        assert_eq!(
            listing.parts,
            vec![
                "events/date=2026-12-01/event=a/part-000000000001-000000000002.parquet",
                "pages/date=2026-12-01/part-000000000001-000000000002.parquet",
            ]
        );
        assert_eq!(
            listing.temps,
            vec!["pages/date=2026-12-01/.part-000000000003-000000000004.parquet.tmp"]
        );
        folder
            .remove(
                listing
                    .temps
                    .into_iter()
                    .chain(["gone.parquet".into()])
                    .collect(),
            )
            .await
            .unwrap();
        assert!(folder.list().await.unwrap().temps.is_empty());
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_created_fails_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(
            Folder::new(dir.path().join("file/below"))
                .probe()
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_second_writer_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::new(dir.path());
        let held = folder.lock().await.unwrap();
        let other = folder.clone();
        let waiter = tokio::spawn(async move { other.lock().await.map(|_| ()) });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.unwrap().unwrap();
    }
}
