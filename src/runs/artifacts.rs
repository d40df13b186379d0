//! Stored run outputs (`output.md`, `response.json`, later others): one folder of named files
//! per run, kept through the `object_store` crate so that moving them from the local disk to an
//! S3-compatible store (R2, MinIO) is a change of constructor, not of callers.
//!
//! Callers see run ids and artifact names, never paths. Both are checked here before any store
//! call ([`is_valid_run_id`], [`is_valid_name`]), so a name that came from a client or a node
//! can neither climb out of its run's folder nor hide a file in it. Inside the store the layout
//! is `runs/<run_id>/<name>`.
//!
//! Writes replace, atomically: the local store writes `<name>#<n>` beside the target and renames
//! it into place (fsynced, so a run marked done never points at bytes still in the page cache).
//! A reader sees the old bytes or the new, never a mix, and a retried run replaces its artifacts
//! instead of adding to them.
//!
//! Error messages name the run and the artifact, never a filesystem path, because they may reach
//! an API client; the store's full error goes to the log for the operator.
//!
//! Not for: deciding what a run stores or when it is deleted (the run worker, retention),
//! turning a node's answer into an output (`output.rs`), or serving artifacts over HTTP.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The longest artifact name, in characters (all ASCII, so also bytes).
pub const MAX_NAME_CHARS: usize = 100;

/// The longest part of a run id after `run_`.
pub const MAX_RUN_ID_SUFFIX_CHARS: usize = 64;

const RUN_ID_PREFIX: &str = "run_";

/// The store's top-level folder, which holds one folder per run.
const RUNS_FOLDER: &str = "runs";

/// The artifacts of every run, in one store.
#[derive(Debug, Clone)]
pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
}

/// One stored artifact, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub name: String,
    pub size: u64,
    pub content_type: &'static str,
}

impl ArtifactInfo {
    fn new(name: &str, size: u64) -> ArtifactInfo {
        ArtifactInfo {
            name: name.to_owned(),
            size,
            content_type: content_type(name),
        }
    }
}

impl Artifacts {
    /// Artifacts kept under `dir` on the local disk (`artifacts.dir`), which is created when
    /// missing. Fails at start-up, naming the directory, when it cannot be created or opened.
    pub fn local(dir: &Path) -> Result<Artifacts, String> {
        let shown = dir.display();
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("artifacts directory {shown}: cannot create it: {e}"))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| format!("artifacts directory {shown}: cannot open it: {}", cause(&e)))?
            // Retention leaves no empty run folders behind.
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(Artifacts {
            store: Arc::new(store),
        })
    }

    /// Artifacts kept in memory only: for the unit tests of callers.
    pub fn in_memory() -> Artifacts {
        Artifacts {
            store: Arc::new(InMemory::new()),
        }
    }

    /// Stores `bytes` as the run's artifact `name`, replacing any earlier one of that name.
    pub async fn put(&self, run_id: &str, name: &str, bytes: Bytes) -> Result<(), String> {
        let location = location(run_id, name)?;
        match self.store.put(&location, PutPayload::from(bytes)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(store_error("write", run_id, Some(name), &e)),
        }
    }

    /// The run's artifacts, sorted by name; empty for a run that stored none.
    pub async fn list(&self, run_id: &str) -> Result<Vec<ArtifactInfo>, String> {
        let folder = run_folder(run_id)?;
        let objects: Vec<_> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| store_error("list", run_id, None, &e))?;
        let mut artifacts: Vec<ArtifactInfo> = objects
            .iter()
            .filter_map(|object| {
                let name = artifact_name(&folder, &object.location)?;
                Some(ArtifactInfo::new(&name, object.size))
            })
            .collect();
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(artifacts)
    }

    /// The run's artifact `name` and its bytes, or None when the run has no such artifact.
    pub async fn get(
        &self,
        run_id: &str,
        name: &str,
    ) -> Result<Option<(ArtifactInfo, Bytes)>, String> {
        let location = location(run_id, name)?;
        let found = match self.store.get(&location).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error("read", run_id, Some(name), &e)),
        };
        let bytes = found
            .bytes()
            .await
            .map_err(|e| store_error("read", run_id, Some(name), &e))?;
        Ok(Some((ArtifactInfo::new(name, bytes.len() as u64), bytes)))
    }

    /// Removes every artifact of the run (retention); returns how many files went. A run with
    /// none, or already removed, gives 0.
    pub async fn delete_run(&self, run_id: &str) -> Result<u64, String> {
        let folder = run_folder(run_id)?;
        let locations: Vec<StorePath> = self
            .store
            .list(Some(&folder))
            .map_ok(|object| object.location)
            .try_collect()
            .await
            .map_err(|e| store_error("list", run_id, None, &e))?;
        let mut removed = 0;
        for location in &locations {
            match self.store.delete(location).await {
                Ok(()) => removed += 1,
                // Another retention pass got there first.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error("delete", run_id, location.filename(), &e)),
            }
        }
        Ok(removed)
    }
}

/// An artifact name callers may use: 1 to [`MAX_NAME_CHARS`] of `A-Z a-z 0-9 . _ -`, not
/// starting with a dot and without `..`. So no separators, no traversal, no hidden files, no
/// escapes (`%2e`), nothing a filesystem or an object store reads specially.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A run id: `run_` and 1 to [`MAX_RUN_ID_SUFFIX_CHARS`] of `a-z 0-9`.
pub fn is_valid_run_id(run_id: &str) -> bool {
    run_id.strip_prefix(RUN_ID_PREFIX).is_some_and(|suffix| {
        (1..=MAX_RUN_ID_SUFFIX_CHARS).contains(&suffix.len())
            && suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// The `Content-Type` an artifact is served with, from its extension (any case).
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, extension)| extension);
    let is = |known: &str| extension.eq_ignore_ascii_case(known);
    if is("md") {
        "text/markdown; charset=utf-8"
    } else if is("json") {
        "application/json"
    } else if is("txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

fn run_folder(run_id: &str) -> Result<StorePath, String> {
    if !is_valid_run_id(run_id) {
        return Err(format!(
            "invalid run id {}: expected run_ and 1-{MAX_RUN_ID_SUFFIX_CHARS} of a-z 0-9",
            preview(run_id)
        ));
    }
    Ok(StorePath::from_iter([RUNS_FOLDER, run_id]))
}

fn location(run_id: &str, name: &str) -> Result<StorePath, String> {
    let folder = run_folder(run_id)?;
    if !is_valid_name(name) {
        return Err(format!(
            "invalid artifact name {}: expected 1-{MAX_NAME_CHARS} of A-Z a-z 0-9 . _ -, \
             not starting with a dot, without ..",
            preview(name)
        ));
    }
    Ok(folder.join(name))
}

/// The artifact name of a listed object: the single part after the run's folder. Anything
/// else in the folder (a sub-folder's file, a name no caller could have given) is not listed.
fn artifact_name(folder: &StorePath, location: &StorePath) -> Option<String> {
    let mut parts = location.prefix_match(folder)?;
    let name = parts.next()?;
    if parts.next().is_some() || !is_valid_name(name.as_ref()) {
        return None;
    }
    Some(name.as_ref().to_owned())
}

/// A refused id or name as an error message shows it: quoted and escaped, and cut, since it
/// may be anything a client sent.
fn preview(text: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    let shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        format!("{shown:?}…")
    } else {
        format!("{shown:?}")
    }
}

/// The message for a failed store call: the run, the artifact and the cause, without the paths
/// the store's own message carries. The whole error is logged for the operator.
fn store_error(
    action: &str,
    run_id: &str,
    name: Option<&str>,
    error: &object_store::Error,
) -> String {
    tracing::warn!(%error, run_id, name, "artifact store: cannot {action}");
    let cause = cause(error);
    match name {
        Some(name) => format!("cannot {action} artifact {name} of {run_id}: {cause}"),
        None => format!("cannot {action} the artifacts of {run_id}: {cause}"),
    }
}

/// What went wrong, in words that name no path: the operating system's error where there is
/// one (`Permission denied (os error 13)`), else the kind of store error.
fn cause(error: &object_store::Error) -> String {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            // Rebuilt from the code or the kind: an io::Error made by a library may wrap a
            // message that names the path.
            return match io.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
                None => io.kind().to_string(),
            };
        }
        next = current.source();
    }
    match error {
        object_store::Error::NotFound { .. } => "not found".to_owned(),
        object_store::Error::AlreadyExists { .. } => "already exists".to_owned(),
        object_store::Error::NotImplemented { .. } => "not supported by the store".to_owned(),
        _ => "store error (see the log)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "run_0a1b2c";

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// The files under `dir`, relative to it, sorted.
    fn files_under(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(&folder).expect("read_dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let relative = path.strip_prefix(dir).expect("under dir");
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    async fn round_trip(artifacts: &Artifacts) {
        artifacts
            .put(RUN, "response.json", bytes("{\"id\":1}"))
            .await
            .expect("put json");
        artifacts
            .put(RUN, "output.md", bytes("# Héllo"))
            .await
            .expect("put md");
        let listed = artifacts.list(RUN).await.expect("list");
        assert_eq!(
            listed,
            vec![
                ArtifactInfo {
                    name: "output.md".into(),
                    size: "# Héllo".len() as u64,
                    content_type: "text/markdown; charset=utf-8",
                },
                ArtifactInfo {
                    name: "response.json".into(),
                    size: 8,
                    content_type: "application/json",
                },
            ]
        );
        let (info, body) = artifacts
            .get(RUN, "output.md")
            .await
            .expect("get")
            .expect("found");
        assert_eq!(info, listed[0]);
        assert_eq!(body, bytes("# Héllo"));
        assert_eq!(artifacts.get(RUN, "missing.txt").await, Ok(None));
        assert_eq!(artifacts.list("run_none").await, Ok(Vec::new()));
    }

    #[tokio::test]
    async fn puts_lists_and_gets_in_memory() {
        round_trip(&Artifacts::in_memory()).await;
    }

    #[tokio::test]
    async fn puts_lists_and_gets_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        round_trip(&Artifacts::local(dir.path()).expect("local")).await;
    }

    #[tokio::test]
    async fn local_puts_files_under_runs_and_creates_the_dir() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data").join("artifacts");
        let artifacts = Artifacts::local(&dir).expect("creates missing dirs");
        artifacts
            .put(RUN, "output.md", bytes("text"))
            .await
            .expect("put");
        assert_eq!(files_under(&dir), vec![format!("runs/{RUN}/output.md")]);
        let on_disk = std::fs::read(dir.join("runs").join(RUN).join("output.md"));
        assert_eq!(on_disk.expect("file on disk"), b"text");
    }

    #[test]
    fn local_names_a_dir_it_cannot_create() {
        let parent = tempfile::tempdir().expect("tempdir");
        let file = parent.path().join("taken");
        std::fs::write(&file, b"not a dir").expect("write");
        let error = Artifacts::local(&file.join("artifacts")).expect_err("under a file");
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains("cannot create"), "{error}");
    }

    #[tokio::test]
    async fn a_second_put_replaces_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifacts = Artifacts::local(dir.path()).expect("local");
        for text in ["a first, longer answer", "short"] {
            artifacts
                .put(RUN, "output.md", bytes(text))
                .await
                .expect("put");
        }
        let (info, body) = artifacts
            .get(RUN, "output.md")
            .await
            .expect("get")
            .expect("found");
        assert_eq!(body, bytes("short"));
        assert_eq!(info.size, 5);
        assert_eq!(artifacts.list(RUN).await.expect("list").len(), 1);
        assert_eq!(
            files_under(dir.path()),
            vec![format!("runs/{RUN}/output.md")]
        );
    }

    #[tokio::test]
    async fn refuses_bad_names_and_ids_before_touching_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifacts = Artifacts::local(dir.path()).expect("local");
        let too_long = "a".repeat(MAX_NAME_CHARS + 1);
        let bad_names = [
            "../x", "a/b", "/abs", ".hidden", "%2e%2e", "", "a\0b", "..", "a..b", "a\\b", "é.md",
            "a b", "x#1", &too_long,
        ];
        for name in bad_names {
            assert!(!is_valid_name(name), "{name:?}");
            let error = artifacts
                .put(RUN, name, bytes("x"))
                .await
                .expect_err("bad name refused");
            assert!(error.starts_with("invalid artifact name"), "{error}");
            assert!(artifacts.get(RUN, name).await.is_err(), "{name:?}");
        }
        let too_long_id = format!("run_{}", "a".repeat(MAX_RUN_ID_SUFFIX_CHARS + 1));
        let bad_ids = [
            "",
            "run_",
            "run",
            "RUN_abc",
            "run_ABC",
            "run_a-b",
            "run_../x",
            "run_a/b",
            "abc",
            &too_long_id,
        ];
        for run_id in bad_ids {
            assert!(!is_valid_run_id(run_id), "{run_id:?}");
            let put = artifacts.put(run_id, "output.md", bytes("x")).await;
            assert!(put.expect_err("bad id").starts_with("invalid run id"));
            assert!(artifacts.list(run_id).await.is_err(), "{run_id:?}");
            assert!(artifacts.delete_run(run_id).await.is_err(), "{run_id:?}");
        }
        assert_eq!(files_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn accepts_ordinary_names_and_ids() {
        let longest = "a".repeat(MAX_NAME_CHARS);
        for name in ["output.md", "response.json", "a-b_c.1", "A", "x.", &longest] {
            assert!(is_valid_name(name), "{name:?}");
        }
        let longest_id = format!("run_{}", "z9".repeat(MAX_RUN_ID_SUFFIX_CHARS / 2));
        for run_id in ["run_a", "run_0", "run_01hx2k9", &longest_id] {
            assert!(is_valid_run_id(run_id), "{run_id:?}");
        }
    }

    #[test]
    fn refused_values_are_quoted_and_cut_in_errors() {
        let error = run_folder(&"x\n".repeat(1_000)).expect_err("bad id");
        assert!(!error.contains('\n'), "{error}");
        assert!(error.len() < 200, "{error}");
    }

    #[tokio::test]
    async fn delete_run_removes_only_that_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifacts = Artifacts::local(dir.path()).expect("local");
        // `run_a` is a prefix of `run_ab` as a string, not as a folder.
        for (run_id, name) in [
            ("run_a", "output.md"),
            ("run_a", "response.json"),
            ("run_ab", "output.md"),
        ] {
            artifacts.put(run_id, name, bytes(name)).await.expect("put");
        }
        assert_eq!(artifacts.list("run_a").await.expect("list").len(), 2);
        assert_eq!(artifacts.delete_run("run_a").await, Ok(2));
        assert_eq!(artifacts.list("run_a").await, Ok(Vec::new()));
        assert_eq!(artifacts.delete_run("run_a").await, Ok(0));
        assert_eq!(artifacts.list("run_ab").await.expect("list").len(), 1);
        assert_eq!(files_under(dir.path()), vec!["runs/run_ab/output.md"]);
        assert!(!dir.path().join("runs").join("run_a").exists());
    }

    #[tokio::test]
    async fn delete_run_in_memory() {
        let artifacts = Artifacts::in_memory();
        artifacts
            .put(RUN, "output.md", bytes("x"))
            .await
            .expect("put");
        assert_eq!(artifacts.delete_run(RUN).await, Ok(1));
        assert_eq!(artifacts.get(RUN, "output.md").await, Ok(None));
    }

    #[tokio::test]
    async fn store_errors_name_the_artifact_not_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifacts = Artifacts::local(dir.path()).expect("local");
        // A file where the run's folder should be: every write under it fails.
        std::fs::create_dir_all(dir.path().join("runs")).expect("mkdir");
        std::fs::write(dir.path().join("runs").join(RUN), b"in the way").expect("write");
        let error = artifacts
            .put(RUN, "output.md", bytes("x"))
            .await
            .expect_err("cannot write under a file");
        assert!(
            error.contains("output.md") && error.contains(RUN),
            "{error}"
        );
        let root = dir.path().display().to_string();
        assert!(!error.contains(&root), "{error}");
        assert!(!error.contains('/'), "{error}");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("output.md"), "text/markdown; charset=utf-8");
        assert_eq!(content_type("NOTES.MD"), "text/markdown; charset=utf-8");
        assert_eq!(content_type("response.json"), "application/json");
        assert_eq!(content_type("log.txt"), "text/plain; charset=utf-8");
        for other in ["image.png", "md", "archive.tar.gz", "x.", "json"] {
            assert_eq!(content_type(other), "application/octet-stream", "{other}");
        }
    }
}
