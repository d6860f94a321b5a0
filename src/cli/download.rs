//! `jobs download`: a job's stored files streamed to a directory, each checked against the sha256 its
//! manifest lists (`GET /jobs/{id}/files`) before it takes its name.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client::ApiClient;
use super::error::CliError;

/// A file written to the directory.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Downloaded {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// Lower-case hex, equal to the manifest's.
    pub sha256: String,
}

/// Downloads the job's files (or the one named) into `dir`, creating it if needed.
///
/// Each file is streamed to a hidden `.<name>.<random>.part` file beside its target while its sha256 is
/// computed, and renamed to `<name>` only when the digest matches the listing's; otherwise the part file is
/// removed. Targets that exist are refused before anything is downloaded, unless `force`.
///
/// # Errors
/// [`CliError::State`] for a job without stored files (not succeeded or partial), [`CliError::Missing`] for a
/// name the job does not list, [`CliError::Exists`], [`CliError::ChecksumMismatch`], and the API's and the
/// file system's errors.
pub async fn download(
    client: &ApiClient,
    job_id: &str,
    name: Option<&str>,
    dir: &Path,
    force: bool,
) -> Result<Vec<Downloaded>, CliError> {
    let listing = client.get_json(&["jobs", job_id, "files"], &[]).await?;
    let files = listing["files"].as_array().ok_or_else(|| {
        CliError::Unexpected(format!(
            "GET /jobs/{job_id}/files answered without a files array"
        ))
    })?;
    if files.is_empty() {
        let job = client.get_json(&["jobs", job_id], &[]).await?;
        return Err(CliError::State(format!(
            "job {job_id} has no stored files: it is {}, and only succeeded and partial jobs keep theirs",
            job["status"].as_str().unwrap_or("?")
        )));
    }
    let wanted: Vec<&Value> = match name {
        Some(name) => vec![files.iter().find(|f| f["name"] == name).ok_or_else(|| {
            CliError::Missing(format!("job {job_id} has no file named {name:?}"))
        })?],
        None => files.iter().collect(),
    };
    let mut plan = Vec::with_capacity(wanted.len());
    for file in wanted {
        let name = file["name"].as_str().unwrap_or_default();
        if local_path(name).is_none() {
            return Err(CliError::Unexpected(format!(
                "the job lists a file named {name:?}, which is not a relative path of plain names: not \
                 written"
            )));
        }
        let expected = file["sha256"]
            .as_str()
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                CliError::Unexpected(format!(
                    "the job lists no sha256 for {name}: it cannot be verified, so it is not downloaded"
                ))
            })?;
        plan.push((name.to_owned(), expected.to_ascii_lowercase()));
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    if !force {
        if let Some((name, _)) = plan.iter().find(|(name, _)| target(dir, name).exists()) {
            return Err(CliError::Exists(target(dir, name)));
        }
    }
    let mut downloaded = Vec::with_capacity(plan.len());
    for (name, expected) in plan {
        downloaded.push(download_one(client, job_id, &name, &expected, dir).await?);
    }
    Ok(downloaded)
}

async fn download_one(
    client: &ApiClient,
    job_id: &str,
    name: &str,
    expected: &str,
    dir: &Path,
) -> Result<Downloaded, CliError> {
    let response = client.open(&["jobs", job_id, "files", name], "*/*").await?;
    let path = target(dir, name);
    // A file platform's file is `{dataType}/{key}`: it goes to that sub-directory.
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
    let part = PartFile::create(parent, name.rsplit('/').next().unwrap_or(name))?;
    let mut writer = std::io::BufWriter::with_capacity(256 * 1024, &part.file);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| CliError::transport(format!("downloading {name} broke off"), e))?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        // A local file: a blocking write of one chunk is what backpressure should be for a CLI.
        writer
            .write_all(&chunk)
            .map_err(|e| CliError::io(&part.path, e))?;
    }
    writer.flush().map_err(|e| CliError::io(&part.path, e))?;
    drop(writer);
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        return Err(CliError::ChecksumMismatch {
            name: name.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    part.file
        .sync_all()
        .map_err(|e| CliError::io(&part.path, e))?;
    part.keep_as(&path)?;
    Ok(Downloaded {
        name: name.to_owned(),
        path,
        bytes,
        sha256: actual,
    })
}

/// Where a listed file goes under `dir` (its name was checked by [`local_path`] first).
fn target(dir: &Path, name: &str) -> PathBuf {
    dir.join(local_path(name).unwrap_or_default())
}

/// The relative path a listed name is written to: the name's `/`-separated parts (a file platform's file is
/// listed as `{dataType}/{key}`), each a plain file name; `None` for anything else, which could leave the
/// directory.
fn local_path(name: &str) -> Option<PathBuf> {
    name.split('/')
        .all(is_plain_file_name)
        .then(|| name.split('/').collect())
}

/// A name that stays inside the directory: no separator, not `.` or `..`, not hidden, no NUL.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name() == Some(std::ffi::OsStr::new(name))
}

/// A download in progress, removed unless it was kept (an error or a mismatch leaves nothing behind).
struct PartFile {
    path: PathBuf,
    file: std::fs::File,
    kept: bool,
}

impl PartFile {
    fn create(dir: &Path, name: &str) -> Result<Self, CliError> {
        let path = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| CliError::io(&path, e))?;
        Ok(Self {
            path,
            file,
            kept: false,
        })
    }

    /// Renames it to `target` (replacing a file there: refused earlier unless `--force`).
    fn keep_as(mut self, target: &Path) -> Result<(), CliError> {
        std::fs::rename(&self.path, target).map_err(|e| CliError::io(target, e))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_name_is_written_below_the_directory_only() {
        assert_eq!(
            local_path("files/1fiLE0001"),
            Some(PathBuf::from("files").join("1fiLE0001"))
        );
        assert_eq!(
            local_path("customers.ndjson.gz"),
            Some(PathBuf::from("customers.ndjson.gz"))
        );
        for bad in [
            "",
            "/files/x",
            "files/../x",
            "files//x",
            "files/",
            "a\\b/c",
            "./x",
            "files/.x",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_plain_names_are_written() {
        for good in ["customers.ndjson.gz", "manifest.json"] {
            assert!(is_plain_file_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            ".hidden",
            "a\0b",
            "/etc/passwd",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
