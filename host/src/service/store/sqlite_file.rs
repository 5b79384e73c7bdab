//! The SQLite database file: `sqlite://PATH` (the form the README and
//! `--help` give) must create a new database, and the file holds device
//! token hashes and every measurement, so it is created readable by its
//! owner only. SQLite gives its `-wal` and `-shm` files the database
//! file's permissions.

use std::path::Path;

/// The connect URL of a `sqlite:` URL: `mode=rwc` (create if missing)
/// unless the URL already names a mode, and a missing database file created
/// first with mode 0600. In-memory URLs pass unchanged. The error names
/// the file it could not create.
pub fn prepare(url: &str) -> std::io::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Ok(url.to_string());
    }
    create_private(Path::new(path)).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create the database file {path}: {e}"),
        )
    })?;
    if query.split('&').any(|p| p.starts_with("mode=")) {
        Ok(url.to_string())
    } else if query.is_empty() {
        Ok(format!("{url}?mode=rwc"))
    } else {
        Ok(format!("{url}&mode=rwc"))
    }
}

/// Creates `path` empty with mode 0600 if it does not exist (SQLite takes
/// an empty file as an empty database).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_created_private_and_opened_read_write_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let url = format!("sqlite://{}", path.display());
        assert_eq!(prepare(&url).unwrap(), format!("{url}?mode=rwc"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let given = format!("{url}?mode=ro");
        assert_eq!(prepare(&given).unwrap(), given);
        let other = format!("{url}?cache=shared");
        assert_eq!(prepare(&other).unwrap(), format!("{other}&mode=rwc"));
        assert_eq!(prepare("sqlite::memory:").unwrap(), "sqlite::memory:");
    }
}
