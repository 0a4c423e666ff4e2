//! Recipe transfers between peers (`magicfs push` / `pull`, and the
//! receiving side a `magicfs serve` runs).
//!
//! Push: the sender posts the file's [`Recipe`] (`POST /transfer/offer`);
//! the peer looks every chunk up in its [`ChunkIndex`], copies the ones it has
//! (after checking their BLAKE3) into a hidden temporary file next to the
//! destination, and answers with the indices of the chunks it lacks. Only
//! those travel, zstd-compressed, in frames (`POST /transfer/ID/chunks`); the
//! peer checks each one's length and BLAKE3 before writing it. On
//! `POST /transfer/ID/commit` the peer hashes the whole temporary file, and
//! only if it matches the recipe's BLAKE3 is it fsynced and renamed onto the
//! destination. Any failure removes the temporary file: nothing is visible.
//!
//! Pull is the mirror image: `GET /transfer/recipe/PATH`, the puller reuses
//! chunks of the file already at the local path, fetches the rest
//! (`POST /transfer/fetch`) and checks and renames the same way.
//!
//! Test knob: `MAGICFS_TEST_CORRUPT_CHUNK=N` makes push flip one byte of the
//! N-th chunk it sends (0-based) before compressing it, and pull flip one byte
//! of the N-th chunk it receives, to show that corruption in transit is caught.

use crate::error::{RemoteError, RemoteResult};
use crate::index::{file_recipe, open_regular, read_verified, ChunkIndex, INCOMING_MARK};
use crate::recipe::{decode_frames, encode_frame, hex, Recipe};
use magicfs_net::url::encode_path;
use magicfs_net::{Client, HttpUrl};
use magicfs_store::chunker::chunk_id;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Most compressed bytes in one chunk upload.
pub const UPLOAD_BYTES: usize = 8 << 20;
/// Most chunks asked for in one fetch.
pub const FETCH_CHUNKS: usize = 256;
/// The test knob's variable.
pub const CORRUPT_ENV: &str = "MAGICFS_TEST_CORRUPT_CHUNK";

/// A file being received.
#[derive(Debug)]
pub struct Incoming {
    dest: PathBuf,
    temp: PathBuf,
    file: File,
    recipe: Recipe,
    needed: Vec<bool>,
    left: usize,
    /// When the transfer began.
    pub started: Instant,
}

/// A unique-enough suffix for temporary names.
fn nonce() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!("{}-{:016x}", std::process::id(), RandomState::new().hash_one(Instant::now()))
}

/// The hidden temporary name next to `dest`.
fn temp_name(dest: &Path) -> RemoteResult<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| RemoteError::Transfer(format!("{}: not a file name", dest.display())))?
        .to_string_lossy();
    Ok(dest.with_file_name(format!(".{name}{INCOMING_MARK}{}", nonce())))
}

impl Incoming {
    /// Starts receiving `recipe` as `dest`: creates the temporary file, copies
    /// in every chunk `index` holds (verified), and returns the indices of the
    /// chunks still needed.
    pub fn begin(dest: PathBuf, recipe: Recipe, index: &ChunkIndex) -> RemoteResult<(Incoming, Vec<u32>)> {
        let temp = temp_name(&dest)?;
        let io = |e: std::io::Error| RemoteError::Io(format!("{}: {e}", temp.display()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&temp).map_err(io)?;
        let mut inc = Incoming {
            dest,
            temp: temp.clone(),
            file,
            needed: vec![true; recipe.chunks.len()],
            left: recipe.chunks.len(),
            recipe,
            started: Instant::now(),
        };
        inc.file().set_len(inc.recipe.size).map_err(io)?;
        // Copy what is here already; the same chunk may appear several times.
        let found: Vec<Option<Vec<u8>>> = inc
            .recipe
            .chunks
            .par_iter()
            .map(|c| index.locate(&c.id).and_then(|loc| read_verified(loc, &c.id)))
            .collect();
        for (i, bytes) in found.into_iter().enumerate() {
            if let Some(bytes) = bytes {
                let c = inc.recipe.chunks[i];
                inc.file().write_all_at(&bytes, c.offset).map_err(io)?;
                inc.needed[i] = false;
                inc.left -= 1;
            }
        }
        let missing = (0..inc.needed.len()).filter(|&i| inc.needed[i]).map(|i| i as u32).collect();
        Ok((inc, missing))
    }

    fn file(&self) -> &File {
        &self.file
    }

    /// Chunks still needed.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Accepts a body of frames: each chunk's length and BLAKE3 must match
    /// the recipe. Returns how many chunks were written.
    pub fn accept(&mut self, body: &[u8]) -> RemoteResult<u64> {
        let frames = decode_frames(body)?;
        let checked: Vec<RemoteResult<()>> = frames
            .par_iter()
            .map(|(i, raw)| {
                let c = self
                    .recipe
                    .chunks
                    .get(*i as usize)
                    .ok_or_else(|| RemoteError::Transfer(format!("chunk {i} is not in the recipe")))?;
                if raw.len() != c.len as usize || chunk_id(raw) != c.id {
                    return Err(RemoteError::Transfer(format!(
                        "chunk {i} (at offset {}) does not match its BLAKE3 id {}; it was corrupted in transit, the transfer is abandoned and nothing was written",
                        c.offset,
                        c.id.to_hex()
                    )));
                }
                Ok(())
            })
            .collect();
        checked.into_iter().collect::<RemoteResult<Vec<()>>>()?;
        let mut n = 0;
        for (i, raw) in frames {
            let c = self.recipe.chunks[i as usize];
            self.file()
                .write_all_at(&raw, c.offset)
                .map_err(|e| RemoteError::Io(format!("{}: {e}", self.temp.display())))?;
            if std::mem::take(&mut self.needed[i as usize]) {
                self.left -= 1;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Checks that every chunk arrived and that the whole file's BLAKE3
    /// matches, then makes it durable and renames it onto the destination.
    pub fn commit(mut self) -> RemoteResult<(PathBuf, Recipe)> {
        if self.left > 0 {
            return Err(RemoteError::Transfer(format!("{} chunks never arrived; nothing was written", self.left)));
        }
        let got = file_recipe(&self.temp)?;
        if got.blake3 != self.recipe.blake3 || got.size != self.recipe.size {
            return Err(RemoteError::Transfer(format!(
                "the received file's BLAKE3 {} is not the sender's {}; nothing was written",
                hex(&got.blake3),
                hex(&self.recipe.blake3)
            )));
        }
        let io = |e: std::io::Error| RemoteError::Io(format!("{}: {e}", self.dest.display()));
        self.file().sync_all().map_err(io)?;
        std::fs::rename(&self.temp, &self.dest).map_err(io)?;
        if let Some(dir) = self.dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let dest = std::mem::take(&mut self.dest);
        self.temp = PathBuf::new();
        Ok((dest, std::mem::replace(&mut self.recipe, Recipe::of(&[]))))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Frames for the chunks `wanted` of the file at `path`, whose recipe is
/// `recipe` (the serving side of pull).
pub fn serve_chunks(path: &Path, recipe: &Recipe, wanted: &[u32]) -> RemoteResult<Vec<u8>> {
    let f = open_regular(path).map_err(|e| RemoteError::Io(format!("{}: {e}", path.display())))?;
    let frames: Vec<RemoteResult<Vec<u8>>> = wanted
        .par_iter()
        .map(|&i| {
            let c = recipe
                .chunks
                .get(i as usize)
                .ok_or_else(|| RemoteError::Transfer(format!("chunk {i} is not in the recipe")))?;
            let mut buf = vec![0u8; c.len as usize];
            f.read_exact_at(&mut buf, c.offset).map_err(|e| RemoteError::Io(format!("{}: {e}", path.display())))?;
            let mut out = Vec::new();
            encode_frame(&mut out, i, &buf)?;
            Ok(out)
        })
        .collect();
    Ok(frames.into_iter().collect::<RemoteResult<Vec<_>>>()?.concat())
}

/// What a transfer moved.
#[derive(Clone, Debug, Serialize)]
pub struct TransferReport {
    /// The path on the peer (push) or here (pull).
    pub path: String,
    /// Size of the file.
    pub logical_bytes: u64,
    /// Bytes sent and received on the wire (HTTP heads and recipe included).
    pub wire_bytes: u64,
    /// Chunks in the recipe.
    pub chunks: u64,
    /// Chunks that travelled.
    pub chunks_sent: u64,
    /// Uncompressed bytes of the chunks that travelled.
    pub chunk_bytes_sent: u64,
    /// Logical bytes over wire bytes.
    pub ratio: f64,
    /// Seconds the transfer took.
    pub elapsed_secs: f64,
}

/// The chunk the test knob corrupts, if set.
fn corrupt_at() -> Option<u64> {
    std::env::var(CORRUPT_ENV).ok().and_then(|v| v.trim().parse().ok())
}

fn authed<'a>(token: &'a Option<String>, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = extra.to_vec();
    if let Some(t) = token {
        h.push(("Authorization", t.as_str()));
    }
    h
}

/// Splits a push destination `http://host:port/dir/name` into the base URL
/// and the path on the peer (relative to its first root); a path that is
/// empty or ends in `/` gets the local file's name appended.
pub fn push_target(peer: &str, local: &Path) -> RemoteResult<(HttpUrl, String)> {
    let url = HttpUrl::parse(peer)?;
    let path = url
        .decoded_path()
        .ok_or_else(|| RemoteError::BadUrl(format!("{peer:?}: the path's percent-escapes are not UTF-8")))?;
    let mut rel = path.trim_start_matches('/').to_string();
    if rel.is_empty() || rel.ends_with('/') {
        let name = local
            .file_name()
            .ok_or_else(|| RemoteError::BadUrl(format!("{}: not a file name", local.display())))?
            .to_string_lossy();
        rel.push_str(&name);
    }
    Ok((url.base(), rel))
}

/// Pushes the file at `local` to `peer` (see the module docs).
pub fn push(
    local: &Path,
    peer: &str,
    token: Option<&str>,
    client: &Client,
    progress: &dyn Fn(u64, u64),
) -> RemoteResult<TransferReport> {
    let started = Instant::now();
    let wire0 = client.wire_bytes();
    let (base, rel) = push_target(peer, local)?;
    let io = |e: std::io::Error| RemoteError::Io(format!("{}: {e}", local.display()));
    let meta = std::fs::metadata(local).map_err(io)?;
    if !meta.is_file() {
        return Err(RemoteError::Io(format!("{} is not a regular file; push sends one file", local.display())));
    }
    let recipe = file_recipe(local)?;
    let token = token.map(|t| format!("Bearer {t}"));
    let json_h = authed(&token, &[("Content-Type", "application/json")]);
    let offer = json!({ "path": rel, "recipe": recipe.to_json() }).to_string();
    let answer: Value = client
        .request("POST", &base.with_path("/transfer/offer"), &json_h, offer.as_bytes())?
        .success("offering the recipe")?
        .json(64 << 20)?;
    let session = answer["session"]
        .as_str()
        .ok_or_else(|| RemoteError::Protocol("the peer's offer answer has no session".into()))?
        .to_string();
    let missing: Vec<u32> = answer["missing"]
        .as_array()
        .ok_or_else(|| RemoteError::Protocol("the peer's offer answer has no missing list".into()))?
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| RemoteError::Protocol("the peer's missing list is not a list of indices".into()))?;
    let f = File::open(local).map_err(io)?;
    let corrupt = corrupt_at();
    let total_raw: u64 = missing.iter().filter_map(|&i| recipe.chunks.get(i as usize)).map(|c| u64::from(c.len)).sum();
    let mut sent_raw = 0u64;
    let chunks_url = base.with_path(&format!("/transfer/{session}/chunks"));
    let bin_h = authed(&token, &[("Content-Type", "application/octet-stream")]);
    // Groups of chunks whose raw size is at most one upload.
    let mut k = 0usize;
    while k < missing.len() {
        let mut end = k;
        let mut raw = 0usize;
        while end < missing.len() && (end == k || raw < UPLOAD_BYTES) {
            let c = recipe.chunks.get(missing[end] as usize).ok_or_else(|| {
                RemoteError::Protocol(format!("the peer asked for chunk {} of {}", missing[end], recipe.chunks.len()))
            })?;
            raw += c.len as usize;
            end += 1;
        }
        let frames: Vec<RemoteResult<Vec<u8>>> = (k..end)
            .into_par_iter()
            .map(|j| {
                let c = recipe.chunks[missing[j] as usize];
                let mut buf = vec![0u8; c.len as usize];
                f.read_exact_at(&mut buf, c.offset).map_err(io)?;
                if corrupt == Some(j as u64) && !buf.is_empty() {
                    buf[0] ^= 0xff;
                }
                let mut out = Vec::new();
                encode_frame(&mut out, missing[j], &buf)?;
                Ok(out)
            })
            .collect();
        let body = frames.into_iter().collect::<RemoteResult<Vec<_>>>()?.concat();
        client.request("POST", &chunks_url, &bin_h, &body)?.success("sending chunks")?.read_body(1 << 20)?;
        sent_raw += raw as u64;
        progress(sent_raw, total_raw);
        k = end;
    }
    client
        .request("POST", &base.with_path(&format!("/transfer/{session}/commit")), &json_h, b"{}")?
        .success("committing the transfer")?
        .read_body(1 << 20)?;
    let wire = client.wire_bytes() - wire0;
    Ok(TransferReport {
        path: rel,
        logical_bytes: recipe.size,
        wire_bytes: wire,
        chunks: recipe.chunks.len() as u64,
        chunks_sent: missing.len() as u64,
        chunk_bytes_sent: sent_raw,
        ratio: recipe.size as f64 / wire.max(1) as f64,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Pulls `remote_path` (relative to the peer's first root) from `peer` into
/// `local`, reusing the chunks of the file already at `local` (see the module docs).
pub fn pull(
    peer: &str,
    remote_path: &str,
    local: &Path,
    token: Option<&str>,
    client: &Client,
    progress: &dyn Fn(u64, u64),
) -> RemoteResult<TransferReport> {
    let started = Instant::now();
    let wire0 = client.wire_bytes();
    let base = HttpUrl::parse(peer)?.base();
    let rel = remote_path.trim_start_matches('/');
    let token = token.map(|t| format!("Bearer {t}"));
    let h = authed(&token, &[]);
    let v: Value = client
        .request("GET", &base.with_path(&format!("/transfer/recipe/{}", encode_path(rel))), &h, b"")?
        .success("asking for the recipe")?
        .json(64 << 20)?;
    let recipe = Recipe::from_json(&v)?;
    let mut have = ChunkIndex::new();
    if local.is_file() {
        have.insert(local, file_recipe(local)?);
    }
    let (mut inc, missing) = Incoming::begin(local.to_path_buf(), recipe.clone(), &have)?;
    let corrupt = corrupt_at();
    let total_raw: u64 = missing.iter().map(|&i| u64::from(recipe.chunks[i as usize].len)).sum();
    let mut got_raw = 0u64;
    let mut seen = 0u64;
    let json_h = authed(&token, &[("Content-Type", "application/json")]);
    for group in missing.chunks(FETCH_CHUNKS) {
        let ask = json!({ "path": rel, "blake3": hex(&recipe.blake3), "chunks": group }).to_string();
        let body = client
            .request("POST", &base.with_path("/transfer/fetch"), &json_h, ask.as_bytes())?
            .success("fetching chunks")?
            .read_body(group.len() * (300 << 10) + (1 << 20))?;
        let body = if let Some(n) = corrupt.filter(|n| (seen..seen + group.len() as u64).contains(n)) {
            corrupt_frame(body, (n - seen) as usize)?
        } else {
            body
        };
        seen += group.len() as u64;
        got_raw +=
            inc.accept(&body).map(|_| group.iter().map(|&i| u64::from(recipe.chunks[i as usize].len)).sum::<u64>())?;
        progress(got_raw, total_raw);
    }
    inc.commit()?;
    let wire = client.wire_bytes() - wire0;
    Ok(TransferReport {
        path: local.display().to_string(),
        logical_bytes: recipe.size,
        wire_bytes: wire,
        chunks: recipe.chunks.len() as u64,
        chunks_sent: missing.len() as u64,
        chunk_bytes_sent: got_raw,
        ratio: recipe.size as f64 / wire.max(1) as f64,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Flips one byte of the `n`-th frame's chunk (re-encoding the frames).
fn corrupt_frame(body: Vec<u8>, n: usize) -> RemoteResult<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    for (k, (i, mut raw)) in decode_frames(&body)?.into_iter().enumerate() {
        if k == n && !raw.is_empty() {
            raw[0] ^= 0xff;
        }
        encode_frame(&mut out, i, &raw)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_types::noise::noise;

    #[test]
    fn receives_only_missing_chunks_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let mut data = noise(3 << 20, 1);
        std::fs::write(root.join("old.bin"), &data).unwrap();
        data[(1 << 20) + 5] ^= 0x55;
        let recipe = Recipe::of(&data);
        let mut index = ChunkIndex::new();
        index.refresh(std::slice::from_ref(&root));
        let dest = root.join("new.bin");
        let (mut inc, missing) = Incoming::begin(dest.clone(), recipe.clone(), &index).unwrap();
        assert!((1..=2).contains(&missing.len()), "{missing:?}");
        // A corrupted chunk is refused and nothing appears.
        let c = recipe.chunks[missing[0] as usize];
        let mut bad = data[c.offset as usize..(c.offset + u64::from(c.len)) as usize].to_vec();
        let mut body = Vec::new();
        bad[3] ^= 1;
        encode_frame(&mut body, missing[0], &bad).unwrap();
        assert!(inc.accept(&body).unwrap_err().to_string().contains("BLAKE3"));
        drop(inc);
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "the temporary file is gone");
        // The good chunks complete it.
        let (mut inc, missing) = Incoming::begin(dest.clone(), recipe.clone(), &index).unwrap();
        let body = serve_chunks(
            &{
                std::fs::write(root.join("src.tmp"), &data).unwrap();
                root.join("src.tmp")
            },
            &recipe,
            &missing,
        )
        .unwrap();
        assert_eq!(inc.accept(&body).unwrap(), missing.len() as u64);
        assert_eq!(inc.left(), 0);
        inc.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[test]
    fn push_targets() {
        let (base, rel) = push_target("http://127.0.0.1:9/", Path::new("/x/a.bin")).unwrap();
        assert_eq!((base.to_string().as_str(), rel.as_str()), ("http://127.0.0.1:9/", "a.bin"));
        assert_eq!(push_target("http://h:9/d/", Path::new("a.bin")).unwrap().1, "d/a.bin");
        assert_eq!(push_target("http://h:9/d/b%20c.bin", Path::new("a.bin")).unwrap().1, "d/b c.bin");
        let (base, rel) = push_target("https://h:9/d/g.bin", Path::new("a.bin")).unwrap();
        assert_eq!((base.to_string().as_str(), rel.as_str()), ("https://h:9/", "d/g.bin"));
    }
}
