//! The on-disk copy of the last applied document set, so a restarted proxy
//! serves at once, before (or without) reaching a control plane.
//!
//! Written after every successful apply, atomically: a temporary file in the
//! same directory, fsync, rename over the cache, fsync of the directory. A
//! reader sees the old set or the new one, never a mix.
//!
//! ```json
//! {"version": 12, "documents": [{"kind": "Service", "namespace": "default", "name": "web", "document": "{…}"}]}
//! ```

use super::documents::{DocKey, Documents};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

/// Writes `docs` to `path`, replacing it atomically.
///
/// # Errors
/// Creating, writing, syncing or renaming the temporary file.
pub(super) fn write(path: &Path, docs: &Documents) -> io::Result<()> {
    let documents: Vec<Value> = docs
        .iter()
        .map(|(key, text)| {
            json!({
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
                "document": text,
            })
        })
        .collect();
    let body = json!({"version": docs.version(), "documents": documents}).to_string();
    let tmp = temporary(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(body.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Reads the cache at `path`. `Ok(None)`: there is none.
///
/// # Errors
/// The file cannot be read, or is not a cache.
pub(super) fn read(path: &Path) -> Result<Option<Documents>, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let version = value
        .get("version")
        .and_then(Value::as_u64)
        .ok_or("no `version`")?;
    let list = value
        .get("documents")
        .and_then(Value::as_array)
        .ok_or("no `documents` list")?;
    let mut docs = BTreeMap::new();
    for (i, entry) in list.iter().enumerate() {
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("documents[{i}].{name} is missing"))
        };
        let key = DocKey::new(field("kind")?, field("namespace")?, field("name")?);
        docs.insert(key, field("document")?.to_owned());
    }
    Ok(Some(Documents::from_parts(version, docs)))
}

/// `DIR/.NAME.tmp`: beside the cache, so the rename stays in one filesystem.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "sinew-cache".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sinew-cache-test-{}-{name}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&dir).expect("scratch dir");
        dir.join("proxy.sinew-cache.json")
    }

    #[test]
    fn a_written_set_reads_back_and_a_missing_file_is_none() {
        let path = scratch("roundtrip");
        assert_eq!(read(&path), Ok(None));
        let mut docs = BTreeMap::new();
        docs.insert(
            DocKey::new("Service", "default", "web"),
            r#"{"kind":"Service","metadata":{"name":"web"},"spec":{}}"#.to_owned(),
        );
        docs.insert(DocKey::new("Mesh", "", "mesh"), "{\"x\":\"é\"}".to_owned());
        let set = Documents::from_parts(42, docs);
        write(&path, &set).expect("write");
        assert_eq!(read(&path), Ok(Some(set.clone())));
        // Replacing leaves no temporary file behind.
        write(&path, &Documents::from_parts(43, BTreeMap::new())).expect("rewrite");
        let left: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(read(&path).map(|d| d.map(|d| d.version())), Ok(Some(43)));
        let _ = fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_file_that_is_not_a_cache_is_an_error() {
        let path = scratch("garbage");
        fs::write(&path, "not json").expect("write");
        assert!(read(&path).is_err());
        fs::write(
            &path,
            r#"{"version": 1, "documents": [{"kind": "Service"}]}"#,
        )
        .expect("write");
        assert_eq!(
            read(&path),
            Err("documents[0].namespace is missing".to_owned())
        );
        let _ = fs::remove_dir_all(path.parent().expect("dir"));
    }
}
