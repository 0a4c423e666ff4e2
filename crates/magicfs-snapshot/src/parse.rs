//! The `serde` side of reading a document: seeds and visitors that hand
//! each entry to the import [`Engine`] as soon as it is complete, so the
//! document is never held whole.

use crate::error::{SnapshotError, SnapshotResult};
use crate::import::{Content, Engine, Entry, Fail};
use crate::{kind_from_name, FORMAT, VERSION};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use magicfs_types::{FileKind, Timespec};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::io::Read;

/// Reads one whole document from `input` through `engine`. A tree error met
/// on the way is returned as is; anything else is the document's fault and
/// carries its line and column.
pub(crate) fn document(input: impl Read, engine: &mut Engine<'_>) -> SnapshotResult<()> {
    let mut de = serde_json::Deserializer::from_reader(input);
    let r = DocSeed { engine: &mut *engine }.deserialize(&mut de).and_then(|()| de.end());
    r.map_err(|e| engine.failure.take().unwrap_or_else(|| SnapshotError::from_json(e)))
}

/// A parser error for `f`, keeping a tree error aside for [`document`].
fn fail<E: de::Error>(engine: &mut Engine<'_>, f: Fail) -> E {
    match f {
        Fail::Schema(m) => E::custom(m),
        Fail::Tree(e) => {
            let m = e.to_string();
            engine.failure = Some(e);
            E::custom(m)
        }
    }
}

/// Stores a field's value, refusing a second one.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum DocKey {
    Format,
    Version,
    Entries,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum EntryKey {
    Path,
    Type,
    Mode,
    Uid,
    Gid,
    Atime,
    Mtime,
    Xattrs,
    Content,
    Target,
    Rdev,
    Link,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(field_identifier, rename_all = "lowercase")]
enum EncodingKey {
    Utf8,
    Base64,
}

/// A small encoded value (extended attributes).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoded {
    Utf8(String),
    Base64(String),
}

/// The top-level object.
struct DocSeed<'a, 't> {
    engine: &'a mut Engine<'t>,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a snapshot object {"format":"magicfs-snapshot","version":1,"entries":[...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut format, mut version, mut entries) = (None, None, None);
        while let Some(key) = map.next_key::<DocKey>()? {
            match key {
                DocKey::Format => {
                    let f: String = map.next_value()?;
                    if f != FORMAT {
                        return Err(de::Error::custom(format!("format is {f:?}, not {FORMAT:?}")));
                    }
                    once(&mut format, (), "format")?;
                }
                DocKey::Version => {
                    let v: u64 = map.next_value()?;
                    if v != VERSION {
                        return Err(de::Error::custom(format!("version {v} is not supported (this reads {VERSION})")));
                    }
                    once(&mut version, (), "version")?;
                }
                DocKey::Entries => {
                    once(&mut entries, (), "entries")?;
                    map.next_value_seed(EntriesSeed { engine: &mut *self.engine })?;
                }
            }
        }
        format.ok_or_else(|| de::Error::missing_field("format"))?;
        version.ok_or_else(|| de::Error::missing_field("version"))?;
        entries.ok_or_else(|| de::Error::missing_field("entries"))
    }
}

/// The `entries` array, one entry at a time.
struct EntriesSeed<'a, 't> {
    engine: &'a mut Engine<'t>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(EntrySeed { engine: &mut *self.engine })?.is_some() {}
        Ok(())
    }
}

/// One entry object.
struct EntrySeed<'a, 't> {
    engine: &'a mut Engine<'t>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

fn time<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Timespec, A::Error> {
    let (sec, nsec): (i64, u32) = map.next_value()?;
    if nsec >= 1_000_000_000 {
        return Err(de::Error::custom(format!("nanoseconds {nsec} are not below 1000000000")));
    }
    Ok(Timespec { sec, nsec })
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object with at least path and type")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut path, mut kind) = (None::<String>, None::<FileKind>);
        let (mut mode, mut uid, mut gid, mut rdev) = (None, None, None, None);
        let (mut atime, mut mtime, mut xattrs) = (None, None, None);
        let (mut target, mut link) = (None, None);
        let mut content = Content::Absent;
        let mut placed = false;
        while let Some(key) = map.next_key::<EntryKey>()? {
            match key {
                EntryKey::Path => once(&mut path, map.next_value()?, "path")?,
                EntryKey::Type => {
                    let name: String = map.next_value()?;
                    let k = kind_from_name(&name).ok_or_else(|| {
                        de::Error::custom(format!(
                            "unknown type {name:?}, expected one of dir, file, symlink, fifo, socket, chardev, blockdev"
                        ))
                    })?;
                    once(&mut kind, k, "type")?;
                }
                EntryKey::Mode => once(&mut mode, map.next_value::<u32>()?, "mode")?,
                EntryKey::Uid => once(&mut uid, map.next_value::<u32>()?, "uid")?,
                EntryKey::Gid => once(&mut gid, map.next_value::<u32>()?, "gid")?,
                EntryKey::Rdev => once(&mut rdev, map.next_value::<u64>()?, "rdev")?,
                EntryKey::Atime => once(&mut atime, time(&mut map)?, "atime")?,
                EntryKey::Mtime => once(&mut mtime, time(&mut map)?, "mtime")?,
                EntryKey::Xattrs => once(&mut xattrs, map.next_value_seed(XattrsSeed)?, "xattrs")?,
                EntryKey::Target => once(&mut target, map.next_value::<String>()?, "target")?,
                EntryKey::Link => once(&mut link, map.next_value::<String>()?, "link")?,
                EntryKey::Content => {
                    if !matches!(content, Content::Absent) {
                        return Err(de::Error::duplicate_field("content"));
                    }
                    // Written straight into the tree when the entry is known
                    // to be a plain file by now (as `magicfs export` orders it).
                    let mut write_to = None;
                    if let (Some(p), Some(FileKind::File), None, true) = (&path, kind, &link, self.engine.writing()) {
                        self.engine.place(p, FileKind::File).map_err(|f| fail(self.engine, f))?;
                        placed = true;
                        write_to = Some(p.clone());
                    }
                    content = map.next_value_seed(ContentSeed { engine: &mut *self.engine, write_to })?;
                }
            }
        }
        let path = path.ok_or_else(|| de::Error::missing_field("path"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        if !placed {
            self.engine.place(&path, kind).map_err(|f| fail(self.engine, f))?;
        }
        let e = Entry { path, kind, mode, uid, gid, atime, mtime, xattrs, content, target, rdev, link };
        self.engine.finish(e).map_err(|f| fail(self.engine, f))
    }
}

/// A file's `content` object: `{"utf8":"..."}` or `{"base64":"..."}`, where
/// a long content is an array of strings (pieces decoded one at a time).
struct ContentSeed<'a, 't> {
    engine: &'a mut Engine<'t>,
    /// Where to write it at once (second pass, entry placed).
    write_to: Option<String>,
}

impl<'de> DeserializeSeed<'de> for ContentSeed<'_, '_> {
    type Value = Content;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Content, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed<'_, '_> {
    type Value = Content;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"{"utf8":"..."} or {"base64":"..."}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Content, A::Error> {
        let Some(key) = map.next_key::<EncodingKey>()? else {
            return Err(de::Error::custom(r#"content must be {"utf8":"..."} or {"base64":"..."}"#));
        };
        let base64 = key == EncodingKey::Base64;
        let c = map.next_value_seed(TextSeed { engine: self.engine, write_to: self.write_to, base64 })?;
        if map.next_key::<EncodingKey>()?.is_some() {
            return Err(de::Error::custom("content must have exactly one of utf8 and base64"));
        }
        Ok(c)
    }
}

/// The string (or array of string pieces) inside a `content` object, taken
/// as soon as each is parsed.
struct TextSeed<'a, 't> {
    engine: &'a mut Engine<'t>,
    write_to: Option<String>,
    base64: bool,
}

impl<'de> DeserializeSeed<'de> for TextSeed<'_, '_> {
    type Value = Content;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Content, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_, '_> {
    type Value = Content;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Content, E> {
        if let Some(p) = &self.write_to {
            self.engine.content(p, s, self.base64, true).map_err(|f| fail(self.engine, f))?;
            Ok(Content::Done)
        } else if !self.engine.writing() {
            self.engine.check_content(s, self.base64, true).map_err(|f| fail(self.engine, f))?;
            Ok(Content::Done)
        } else {
            Ok(Content::Held { pieces: vec![s.to_owned()], base64: self.base64 })
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
        let mut held = Vec::new();
        let mut first = true;
        while let Some(piece) = seq.next_element::<String>()? {
            if let Some(p) = &self.write_to {
                self.engine.content(p, &piece, self.base64, first).map_err(|f| fail(self.engine, f))?;
            } else if !self.engine.writing() {
                self.engine.check_content(&piece, self.base64, first).map_err(|f| fail(self.engine, f))?;
            } else {
                held.push(piece);
            }
            first = false;
        }
        if first {
            // An empty array: an empty file.
            if let Some(p) = &self.write_to {
                self.engine.content(p, "", false, true).map_err(|f| fail(self.engine, f))?;
            } else if !self.engine.writing() {
                self.engine.check_content("", false, true).map_err(|f| fail(self.engine, f))?;
            }
        }
        if self.write_to.is_none() && self.engine.writing() {
            return Ok(Content::Held { pieces: held, base64: self.base64 });
        }
        Ok(Content::Done)
    }
}

/// The `xattrs` object: name → encoded value.
struct XattrsSeed;

impl<'de> DeserializeSeed<'de> for XattrsSeed {
    type Value = Vec<(String, Vec<u8>)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for XattrsSeed {
    type Value = Vec<(String, Vec<u8>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object of extended attributes, each {"utf8":"..."} or {"base64":"..."}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if !names.insert(name.clone()) {
                return Err(de::Error::custom(format!("extended attribute {name:?} appears twice")));
            }
            let value = match map.next_value::<Encoded>()? {
                Encoded::Utf8(s) => s.into_bytes(),
                Encoded::Base64(s) => STANDARD
                    .decode(s)
                    .map_err(|e| de::Error::custom(format!("extended attribute {name:?} is not valid base64: {e}")))?,
            };
            out.push((name, value));
        }
        Ok(out)
    }
}
