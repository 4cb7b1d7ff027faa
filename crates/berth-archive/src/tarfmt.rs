//! Writing tar headers (GNU format, with GNU long-name and long-link entries).
//!
//! The data of files is written by the caller straight into the stream, so file content
//! goes through one large buffer and is hashed on the way, without the tar crate's small
//! copy buffer in between.

use std::io::{self, Write};

use tar::{EntryType, Header};

use crate::manifest::EntryKind;

pub(crate) const BLOCK: u64 = 512;
const NAME_LEN: usize = 100;
const ZEROS: [u8; 512] = [0; 512];

/// What goes into one entry's header.
pub(crate) struct HeaderSpec<'a> {
    pub path: &'a str,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub mtime: u64,
    pub uid: u64,
    pub gid: u64,
    pub target: Option<&'a str>,
}

/// Writes the header(s) of one entry; for a file, `spec.size` bytes of data and
/// [`padding`] must follow.
pub(crate) fn write_header(out: &mut impl Write, spec: &HeaderSpec<'_>) -> io::Result<()> {
    let mut header = Header::new_gnu();
    let (entry_type, name) = match spec.kind {
        EntryKind::File => (EntryType::Regular, spec.path.to_owned()),
        // Like GNU tar, directory names end in `/`.
        EntryKind::Dir => (EntryType::Directory, format!("{}/", spec.path)),
        EntryKind::Symlink => (EntryType::Symlink, spec.path.to_owned()),
    };
    header.set_entry_type(entry_type);
    header.set_size(spec.size);
    header.set_mode(spec.mode);
    header.set_mtime(spec.mtime);
    header.set_uid(spec.uid);
    header.set_gid(spec.gid);

    let old = header.as_old_mut();
    if name.len() > NAME_LEN {
        write_long(out, EntryType::GNULongName, name.as_bytes())?;
    }
    copy_truncated(&mut old.name, name.as_bytes());
    if let Some(target) = spec.target {
        if target.len() > NAME_LEN {
            write_long(out, EntryType::GNULongLink, target.as_bytes())?;
        }
        copy_truncated(&mut old.linkname, target.as_bytes());
    }
    header.set_cksum();
    out.write_all(header.as_bytes())
}

/// Writes the zero bytes that pad `size` bytes of data to a whole block.
pub(crate) fn padding(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = size % BLOCK;
    if rem == 0 {
        return Ok(());
    }
    #[allow(clippy::cast_possible_truncation)] // less than 512
    out.write_all(&ZEROS[..(BLOCK - rem) as usize])
}

/// Writes the two zero blocks that end a tar stream.
pub(crate) fn end_of_archive(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&ZEROS)?;
    out.write_all(&ZEROS)
}

/// A GNU `././@LongLink` entry holding a name or link target too long for the header.
fn write_long(out: &mut impl Write, kind: EntryType, value: &[u8]) -> io::Result<()> {
    let mut header = Header::new_gnu();
    copy_truncated(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    let len = value.len() as u64 + 1; // NUL-terminated
    header.set_size(len);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(value)?;
    out.write_all(&[0])?;
    padding(out, len)
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}
