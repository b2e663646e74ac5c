//! Writes the run folder out of the helper's tar stream, trusting nothing in it: every entry
//! must be a plain file or folder under `<run-id>/`, with no absolute or `..` part. The folder
//! is built beside its destination and moved into place whole, so a broken stream leaves
//! nothing half-copied under the run's name.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Why the stream could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination already holds the run.
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// An entry outside the run's folder, or not a plain file or folder.
    #[error("refused archive entry `{entry}`: {why}")]
    Refused {
        /// The entry's path as the archive names it.
        entry: String,
        /// Why.
        why: &'static str,
    },
    /// The stream held no entry of the run at all.
    #[error("the archive holds nothing of run {0}")]
    Empty(String),
    /// Reading the stream or writing a file failed.
    #[error("{}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The run folder.
    pub dir: PathBuf,
    /// Files in it.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Unpacks the tar stream of run `run` into `out/<run>`; `force` replaces a folder already there.
pub fn unpack(
    stream: impl Read,
    run: &str,
    out: &Path,
    force: bool,
) -> Result<Written, UnpackError> {
    let dest = out.join(run);
    if dest.exists() && !force {
        return Err(UnpackError::Exists(dest));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let staging = out.join(format!(".{run}.retrieving-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let result = write_entries(stream, run, &staging);
    let written = match result {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
    }
    std::fs::rename(staging.join(run), &dest).map_err(io(&dest))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(Written {
        dir: dest,
        files: written.0,
        bytes: written.1,
    })
}

/// Writes every entry under `staging`; returns the file count and bytes.
fn write_entries(
    stream: impl Read,
    run: &str,
    staging: &Path,
) -> Result<(usize, u64), UnpackError> {
    let read_err = |source| UnpackError::Io {
        path: PathBuf::from("<archive>"),
        source,
    };
    let mut archive = tar::Archive::new(stream);
    let (mut files, mut bytes, mut root) = (0usize, 0u64, false);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let path = entry.path().map_err(read_err)?.into_owned();
        let name = path.display().to_string();
        let refused = |why| UnpackError::Refused {
            entry: name.clone(),
            why,
        };
        let rel = checked(&path, run).map_err(refused)?;
        let kind = entry.header().entry_type();
        let target = staging.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|source| UnpackError::Io {
                path: target.clone(),
                source,
            })?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|source| UnpackError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let mut file = std::fs::File::create(&target).map_err(|source| UnpackError::Io {
                path: target.clone(),
                source,
            })?;
            bytes += std::io::copy(&mut entry, &mut file).map_err(|source| UnpackError::Io {
                path: target.clone(),
                source,
            })?;
            files += 1;
        } else if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        } else {
            return Err(refused(
                "not a plain file or folder (links and devices are refused)",
            ));
        }
        root = true;
    }
    if !root {
        return Err(UnpackError::Empty(run.to_string()));
    }
    // An archive of files only (no folder entry) still needs the run folder.
    std::fs::create_dir_all(staging.join(run)).map_err(|source| UnpackError::Io {
        path: staging.join(run),
        source,
    })?;
    Ok((files, bytes))
}

/// The entry's path relative to the staging folder, when it lies under `run/`.
fn checked(path: &Path, run: &str) -> Result<PathBuf, &'static str> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("it climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    match parts.first() {
        Some(first) if *first == run => Ok(parts.iter().collect()),
        _ => Err("it is not in the run's folder"),
    }
}
