//! `tctl edit KIND/NAME`: the resource as YAML in `$VISUAL` / `$EDITOR`,
//! saved back (overwriting) when it changed, as Teleport's `tctl edit`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use client::ApiClient;

/// The editor command: `$VISUAL`, else `$EDITOR`, else `vi`, split on
/// whitespace (`code --wait` works).
fn editor() -> Vec<String> {
    let text = std::env::var("VISUAL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("EDITOR").ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    text.split_whitespace().map(str::to_string).collect()
}

/// A new private file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn create(contents: &str) -> Result<TempFile> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("tctl-edit-{}-{nanos}.yaml", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(contents.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(TempFile(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Edits `kind`/`name`; returns what to print.
pub async fn edit(api: &ApiClient, kind: &str, name: &str) -> Result<String> {
    let item = api
        .get_resources(kind, Some(name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{kind} {name:?} is not found"))?;
    let original = serde_yaml_ng::to_string(&item)?;
    let file = TempFile::create(&original)?;
    let cmd = editor();
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| anyhow!("no editor: set EDITOR"))?;
    let status = std::process::Command::new(prog)
        .args(args)
        .arg(file.path())
        .status()
        .with_context(|| format!("cannot run the editor {prog:?} (set VISUAL or EDITOR)"))?;
    if !status.success() {
        bail!("the editor {prog:?} exited with {status}: nothing saved");
    }
    let edited = std::fs::read_to_string(file.path())
        .with_context(|| format!("cannot read {}", file.path().display()))?;
    if edited == original {
        return Ok("edit canceled, no changes made".to_string());
    }
    let docs = resources::parse_resources(&edited)?;
    match docs.as_slice() {
        [one] if one.kind() == kind && one.name() == name => {}
        [one] => bail!(
            "the edited resource is {} {:?}: tctl edit cannot change a resource's kind or name (use tctl create)",
            one.kind(),
            one.name()
        ),
        _ => bail!("the edited file must hold exactly one resource"),
    }
    api.upsert_resources(&edited, true).await?;
    Ok(format!("{kind} {name:?} has been updated"))
}
