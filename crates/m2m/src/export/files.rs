//! The output files: written under temporary names in the output
//! directory and given their names only once complete and on disk, so an
//! interrupted export leaves no file that looks whole (only hidden
//! `.games.parquet.*.partial` files, removed on any error the process sees).

use anyhow::Context;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A table's file while it is written.
#[derive(Debug)]
pub(crate) struct Staged {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl Staged {
    /// A new temporary file in `dir` for the table file `name`.
    pub(crate) fn new(dir: &Path, name: &str) -> anyhow::Result<Staged> {
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        Ok(Staged {
            temp,
            target: dir.join(name),
        })
    }

    /// A handle to write the file through.
    pub(crate) fn file(&self) -> anyhow::Result<File> {
        self.temp
            .as_file()
            .try_clone()
            .context("cannot open the temporary file")
    }
}

/// The table files an export writes into `dir` that exist already.
pub(crate) fn existing(dir: &Path, names: &[String]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

/// Makes each staged file durable, then gives it its name (replacing a
/// file there only with `replace`), then makes the names durable. Returns
/// the table files' paths.
pub(crate) fn commit(staged: Vec<Staged>, replace: bool) -> anyhow::Result<Vec<PathBuf>> {
    for s in &staged {
        s.temp
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", s.target.display()))?;
    }
    let mut done = Vec::new();
    let mut dirs = Vec::new();
    for Staged { temp, target } in staged {
        let persisted = if replace {
            temp.persist(&target)
        } else {
            temp.persist_noclobber(&target)
        };
        persisted.map_err(|e| {
            anyhow::Error::new(e.error).context(format!("cannot write {}", target.display()))
        })?;
        if let Some(dir) = target.parent() {
            if !dirs.contains(&dir.to_owned()) {
                dirs.push(dir.to_owned());
            }
        }
        done.push(target);
    }
    for dir in dirs {
        // The renames survive a power cut once the directory is synced.
        #[cfg(unix)]
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(done)
}
