//! Writing a report to `--out FILE` so that FILE is always either the old report or the whole
//! new one (`docs/reports.md`, "Formats"): the report goes to a temporary file in the same
//! directory, is flushed and synced, and only then renamed over FILE. A failure on the way (a
//! full disk, a report refused half-way) removes the temporary file and leaves FILE as it was.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::ReportError;

/// Writes the report `write` produces to `path`, replacing it only once the report is complete
/// and on disk. `write` gets a buffered writer over the temporary file; its error is returned
/// as it is, and the temporary file is removed.
pub fn write_replacing<F>(path: &Path, write: F) -> Result<(), ReportError>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<(), ReportError>,
{
    let error = |source: io::Error| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (temporary, file) = create_temporary(path).map_err(error)?;
    let mut out = BufWriter::new(file);
    let written = write(&mut out).and_then(|()| {
        let file = out.into_inner().map_err(|e| error(e.into_error()))?;
        file.sync_all().map_err(error)
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path).map_err(error));
    if renamed.is_err() {
        // The temporary file is ours and incomplete; FILE was never touched.
        let _ = std::fs::remove_file(&temporary);
        return renamed;
    }
    sync_directory(path);
    Ok(())
}

/// A new file beside `path`, named `.NAME.RANDOM.tmp` (hidden, and never an existing file:
/// created with `create_new`).
fn create_temporary(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "--out names no file"))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut attempts = 0;
    loop {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".{suffix}.tmp"));
        let temporary = directory.join(temporary_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
        {
            Ok(file) => return Ok((temporary, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Makes the rename durable where the platform allows it. Best effort: the report is already
/// complete under its name, and a directory that cannot be synced is no reason to call it
/// unwritten.
fn sync_directory(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(directory) = File::open(parent) {
            let _ = directory.sync_all();
        }
    }
}

/// `text` to `out` (replacing it only when complete), or to stdout.
pub fn write_text(out: Option<&Path>, text: &str) -> Result<(), ReportError> {
    match out {
        Some(path) => write_replacing(path, |file| {
            file.write_all(text.as_bytes())
                .map_err(|source| ReportError::Write {
                    path: path.to_path_buf(),
                    source,
                })
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| ReportError::Write {
                    path: PathBuf::from("<stdout>"),
                    source,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_that_fails_half_way_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        std::fs::write(&path, "old, whole\n").unwrap();
        let result = write_replacing(&path, |file| {
            file.write_all(b"new, half").unwrap();
            Err(ReportError::Inconsistent {
                detail: "stopped half-way".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old, whole\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        write_replacing(&path, |file| {
            file.write_all(b"new, whole\n").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new, whole\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
