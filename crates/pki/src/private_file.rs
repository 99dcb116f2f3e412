//! The one way private material (keys, certificates, identity files, profiles) reaches the disk:
//! readable by its owner only, and replaced atomically so that a reader sees the old file or the
//! new one, never a part.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A private file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    /// What could not be created or written: the parent directory, the temporary file or the
    /// target.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Writes `contents` to `path`, readable and writable by the owner only.
///
/// * Missing parent directories are created with mode 0700 (existing ones are left as they are).
/// * The bytes go to a new temporary file next to `path` (`.<name>.<random>.tmp`), created
///   exclusively (`O_EXCL`: never an existing file or a symlink someone planted) with mode 0600,
///   then flushed to disk (`fsync`) and renamed over `path`. A reader sees the old file or the
///   new one; an existing `path`, whatever its mode, is replaced by a 0600 file (a symlink at
///   `path` is replaced, its target untouched).
/// * On unix the directory is synced after the rename (best effort), so the new name survives a
///   crash. Elsewhere the file is created with the platform's default permissions and the rename
///   replaces the target (`MoveFileEx` with `REPLACE_EXISTING` on Windows).
///
/// On failure the temporary file is removed and `path` is unchanged.
pub fn write(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError { path: p, source }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        if !dir.is_dir() {
            let mut b = DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                b.mode(0o700);
            }
            b.create(dir).map_err(err(dir))?;
        }
    }
    let Some(name) = path.file_name() else {
        return Err(WriteError {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
        });
    };
    let tmp = path.with_file_name(format!(
        ".{}.{:016x}.tmp",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let result = write_new(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError {
            path: path.to_path_buf(),
            source: e,
        });
    }
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
        // Durability of the rename; the file itself is already synced, so a failure here loses
        // nothing a reader could see.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `tmp` exclusively with mode 0600 and writes and syncs `contents` to it.
fn write_new(tmp: &Path, contents: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(tmp)?;
    #[cfg(unix)]
    {
        // A umask can only take bits away from 0600, but make the mode exact whatever it is.
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Names in `dir` (the temporary files must be gone).
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write(&p, b"second, longer than the first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer than the first");
        write(&p, b"").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        assert_eq!(names(dir.path()), ["key.pem"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_0600_and_new_directories_0700() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/ca.pem");
        write(&p, b"x").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        // An existing directory keeps its mode.
        use std::os::unix::fs::PermissionsExt as _;
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        write(&shared.join("f"), b"x").unwrap();
        assert_eq!(mode(&shared), 0o755);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_with_a_wider_mode_becomes_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    /// The replacement is a rename: a reader holding the old file keeps reading the old bytes,
    /// and a symlink at the target is replaced, the file it pointed to left alone.
    #[cfg(unix)]
    #[test]
    fn the_target_is_replaced_by_rename() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("profile.yaml");
        write(&p, b"old").unwrap();
        let mut held = std::fs::File::open(&p).unwrap();
        write(&p, b"new").unwrap();
        let mut text = String::new();
        held.read_to_string(&mut text).unwrap();
        assert_eq!(text, "old");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");

        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        write(&link, b"private").unwrap();
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"private");
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
    }

    #[test]
    fn failures_name_the_path_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The parent is a file: no directory can be created there.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = write(&file.join("key"), b"secret").unwrap_err();
        assert_eq!(err.path, file);
        // The target is a directory: the rename fails and the temporary file is removed.
        let target = dir.path().join("d");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        let err = write(&target, b"secret").unwrap_err();
        assert_eq!(err.path, target);
        assert!(err.to_string().starts_with("cannot write "), "{err}");
        assert_eq!(names(dir.path()), ["d", "file"]);
        assert!(write(Path::new(""), b"x").is_err());
    }
}
