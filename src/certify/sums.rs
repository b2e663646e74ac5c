//! `SHA256SUMS` over a bundle folder, in `sha256sum`'s format (`<hex>  <path>`, one line per
//! file, sorted by path), so a reviewer can check it with `sha256sum -c SHA256SUMS`; and the
//! check of a folder against its `SHA256SUMS`: every listed file present with its hash, no
//! file present that is not listed.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};

/// The checksum file.
pub const SUMS: &str = "SHA256SUMS";
/// The detached ed25519 signature over [`SUMS`] (64 raw bytes, as `openssl pkeyutl -sign
/// -rawin` writes it).
pub const SIG: &str = "SHA256SUMS.sig";

/// Lowercase hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every regular file under `dir` but the checksum and signature files, by `/`-separated
/// relative path.
pub fn files(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let kind = e.file_type()?;
            let path = e.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(io::Error::other)?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if rel != SUMS && rel != SIG {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The `SHA256SUMS` text for `dir`.
pub fn render(dir: &Path) -> io::Result<String> {
    let mut s = String::new();
    for f in files(dir)? {
        let bytes = std::fs::read(dir.join(&f))?;
        s.push_str(&format!("{}  {f}\n", sha256_hex(&bytes)));
    }
    Ok(s)
}

/// Parses `SHA256SUMS`: path → hex; a malformed line is a problem naming its number.
pub fn parse(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match line.split_once("  ") {
            Some((hex, path)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.insert(path.to_string(), hex.to_ascii_lowercase());
            }
            _ => problems.push(format!(
                "{SUMS}:{}: not `<sha256 hex>  <path>`: {line}",
                i + 1
            )),
        }
    }
    (out, problems)
}

/// Problems of `dir` against its `SHA256SUMS`, each naming the file.
pub fn check(dir: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(dir.join(SUMS)) {
        Ok(t) => t,
        Err(e) => return vec![format!("{SUMS}: cannot be read: {e}")],
    };
    let (listed, mut problems) = parse(&text);
    let present = match files(dir) {
        Ok(f) => f,
        Err(e) => return vec![format!("{}: cannot be listed: {e}", dir.display())],
    };
    for (path, want) in &listed {
        match std::fs::read(dir.join(path)) {
            Ok(bytes) => {
                let have = sha256_hex(&bytes);
                if &have != want {
                    problems.push(format!(
                        "{path}: SHA-256 is {have}, {SUMS} says {want}: the file changed"
                    ));
                }
            }
            Err(e) => problems.push(format!("{path}: listed in {SUMS} but cannot be read: {e}")),
        }
    }
    for f in present.iter().filter(|f| !listed.contains_key(*f)) {
        problems.push(format!("{f}: not listed in {SUMS}"));
    }
    problems
}
