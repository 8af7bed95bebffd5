//! Writes layer entries as a deterministic tar stream: entries in the given (sorted) order, ustar headers with
//! PAX records where ustar cannot hold a value (long names and link targets, large ids and sizes, pre-1970 mtimes,
//! file capabilities as
//! `SCHILY.xattr.*`), no user or group names, mtimes clamped to `SOURCE_DATE_EPOCH` when one is given.

use std::fs::File;
use std::io::{self, Write};

use tar::{EntryType, Header};

use super::known_files::KnownFiles;
use super::tree::{EntryKind, TreeEntry};
use crate::error::{Error, Result};

/// Write `entries` as a tar stream into `out`; `clamp_mtime` caps every mtime (SOURCE_DATE_EPOCH).
pub fn write_tar<W: Write>(entries: &[TreeEntry], out: W, clamp_mtime: Option<i64>) -> Result<W> {
    write_tar_with(entries, out, clamp_mtime, &KnownFiles::new())
}

/// [`write_tar`], taking the contents of the files `known` holds from memory.
pub fn write_tar_with<W: Write>(
    entries: &[TreeEntry],
    out: W,
    clamp_mtime: Option<i64>,
    known: &KnownFiles,
) -> Result<W> {
    let mut builder = tar::Builder::new(out);
    for e in entries {
        append_entry(&mut builder, e, clamp_mtime, known)?;
    }
    builder.into_inner().map_err(Error::io("finish tar stream", "layer"))
}

fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    e: &TreeEntry,
    clamp: Option<i64>,
    known: &KnownFiles,
) -> Result<()> {
    let mut path = e.path.clone();
    if matches!(e.kind, EntryKind::Dir) {
        path.push(b'/');
    }
    let mut h = Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let (etype, size) = match &e.kind {
        EntryKind::File { size, .. } => (EntryType::Regular, *size),
        EntryKind::Dir => (EntryType::Directory, 0),
        EntryKind::Symlink { .. } => (EntryType::Symlink, 0),
        EntryKind::Hardlink { .. } => (EntryType::Link, 0),
        EntryKind::CharDevice { .. } => (EntryType::Char, 0),
        EntryKind::BlockDevice { .. } => (EntryType::Block, 0),
        EntryKind::Fifo => (EntryType::Fifo, 0),
        EntryKind::Whiteout | EntryKind::Opaque => (EntryType::Regular, 0),
    };
    h.set_entry_type(etype);
    h.set_mode(e.mode);
    let mtime = clamp.map_or(e.mtime, |c| e.mtime.min(c));
    h.set_mtime(mtime.max(0) as u64);
    if mtime < 0 {
        // Before 1970: only PAX can say it (as Go's archive/tar writes it).
        pax.push(("mtime".into(), mtime.to_string().into_bytes()));
    }
    set_numeric(&mut h, &mut pax, "uid", u64::from(e.uid));
    set_numeric(&mut h, &mut pax, "gid", u64::from(e.gid));
    set_numeric(&mut h, &mut pax, "size", size);
    if set_name(&mut h, &path).is_err() {
        pax.push(("path".into(), path.clone()));
        let short: Vec<u8> = path.iter().copied().rev().take(99).collect::<Vec<_>>().into_iter().rev().collect();
        set_name(&mut h, &short).map_err(|_| long_name_error(&path))?;
    }
    let link: Option<Vec<u8>> = match &e.kind {
        EntryKind::Symlink { target } => Some(target.clone()),
        EntryKind::Hardlink { target } => Some(target.as_bytes().to_vec()),
        _ => None,
    };
    if let Some(link) = link
        && (link.len() > 100 || h.set_link_name_literal(std::str::from_utf8(&link).unwrap_or("")).is_err())
    {
        pax.push(("linkpath".into(), link.clone()));
        let _ = h.set_link_name_literal("");
    }
    if let EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } = &e.kind {
        h.set_device_major(*major).map_err(Error::io("set device", "layer"))?;
        h.set_device_minor(*minor).map_err(Error::io("set device", "layer"))?;
    }
    // File capabilities are the one xattr a layer carries (as BuildKit's and containerd's differs write them);
    // `user.*` and the rest stay on the builder's disk.
    for (name, value) in e.xattrs.iter().filter(|(name, _)| name == super::tree::CAPABILITY_XATTR) {
        pax.push((format!("SCHILY.xattr.{name}"), capability_v2(value)));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(Error::io("write PAX header", "layer"))?;
    }
    h.set_cksum();
    match &e.kind {
        EntryKind::File { source, size } if let Some(data) = known.content(source, *size) => {
            b.append(&h, data).map_err(Error::io("write layer entry", source))?;
        }
        EntryKind::File { source, size } => {
            let f = File::open(source).map_err(Error::io("open", source))?;
            // The size was taken when the tree was read: a file that changed since would corrupt the stream.
            let mut limited = io::Read::take(f, *size);
            let mut counter = CountingReader { inner: &mut limited, n: 0 };
            b.append(&h, &mut counter).map_err(Error::io("write layer entry", source))?;
            if counter.n != *size {
                return Err(Error::Malformed {
                    what: format!("file {}", source.display()),
                    reason: "it changed size while the layer was being written".into(),
                });
            }
        }
        _ => b.append(&h, io::empty()).map_err(Error::io("write layer entry", "layer"))?,
    }
    Ok(())
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: io::Read> io::Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn long_name_error(path: &[u8]) -> Error {
    Error::Malformed { what: format!("path {:?}", String::from_utf8_lossy(path)), reason: "cannot be stored".into() }
}

/// Put `path` in the ustar name (and prefix) fields.
fn set_name(h: &mut Header, path: &[u8]) -> std::result::Result<(), ()> {
    let ustar = h.as_ustar_mut().ok_or(())?;
    if path.len() <= 100 {
        ustar.name = [0; 100];
        ustar.name[..path.len()].copy_from_slice(path);
        ustar.prefix = [0; 155];
        return Ok(());
    }
    // Split at a '/' so that the name part fits 100 bytes and the prefix 155.
    let split = (0..path.len()).rev().find(|&i| path[i] == b'/' && path.len() - i - 1 <= 100 && i <= 155).ok_or(())?;
    let (prefix, name) = (&path[..split], &path[split + 1..]);
    if name.is_empty() {
        return Err(());
    }
    ustar.name = [0; 100];
    ustar.name[..name.len()].copy_from_slice(name);
    ustar.prefix = [0; 155];
    ustar.prefix[..prefix.len()].copy_from_slice(prefix);
    Ok(())
}

/// Octal fields: uid/gid hold 7 digits, size 11; larger values go to PAX records.
fn set_numeric(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, field: &str, v: u64) {
    let limit: u64 = if field == "size" { 0o77777777777 } else { 0o7777777 };
    let stored = if v > limit {
        pax.push((field.to_string(), v.to_string().into_bytes()));
        0
    } else {
        v
    };
    match field {
        "uid" => h.set_uid(stored),
        "gid" => h.set_gid(stored),
        _ => h.set_size(stored),
    }
}

/// A file capability as a layer holds it: revision 2. A revision 3 value (a user namespace's, naming the host uid
/// of its root) is read as revision 2 by any container's root, so the root id is dropped, as the capabilities a
/// rootless step sets must work where the image runs.
fn capability_v2(value: &[u8]) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xff00_0000;
    const REVISION_3: u32 = 0x0300_0000;
    const REVISION_2: u32 = 0x0200_0000;
    if value.len() == 24 {
        let magic = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
        if magic & REVISION_MASK == REVISION_3 {
            let mut v2 = value[..20].to_vec();
            v2[..4].copy_from_slice(&(REVISION_2 | (magic & !REVISION_MASK)).to_le_bytes());
            return v2;
        }
    }
    value.to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn revision_3_capabilities_become_revision_2() {
        let mut v3 = vec![0x01, 0, 0, 0x03, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v3.extend(1001u32.to_le_bytes());
        let v2 = super::capability_v2(&v3);
        assert_eq!(v2, [0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(super::capability_v2(&v2), v2);
    }
}
