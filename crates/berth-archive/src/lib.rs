//! berth backup archives: one file per backup, a zstd-compressed tar with a checksummed
//! manifest and a signed index at its end, plus the age encryption of the backup's secrets.
//!
//! The caller decides what goes into a backup (a database dump directory, data
//! directories, the site config, the encrypted secrets); this crate writes
//! ([`ArchiveWriter`]), lists ([`read_index`]), checks ([`verify`]) and restores
//! ([`extract`]) archives, signs them ([`signing`]), and encrypts and decrypts the
//! secrets ([`secrets`]).
//!
//! # What an archive is trusted for
//!
//! Whoever can write to a backup target can write an archive, so nothing in one is
//! believed before its index's ed25519 signature checks out against a key the caller
//! trusts ([`Archive::open`], and the shortcuts [`verify`], [`extract`],
//! [`read_signed_index`]). The signature is checked over the index's raw bytes before they
//! are parsed, and an index over [`MAX_INDEX_BYTES`] is refused from its length. It also
//! covers the length and SHA-256 of the compressed bytes before the index, which reading
//! checks over exactly the bytes it reads: every byte of the file is authenticated as
//! stored, not only what it decodes to (in format 3; archives of the previous format 2,
//! still read, have only what they decode to authenticated: see below). An
//! [`Archive`] is opened once: its verification and extraction read the open file, never
//! the path again, so a file swapped in the target meanwhile is never the one extracted.
//! A file named like an archive must carry the app, version and time of its name in its
//! signed metadata ([`ArchiveError::NameMismatch`]). Even then, extraction never
//! takes ownership or setuid, setgid and sticky bits from it ([`EXTRACTED_MODE_MASK`]),
//! creates every entry relative to directory descriptors with `O_EXCL | O_NOFOLLOW`, and
//! never writes outside its destination. The writer reads every source through a
//! descriptor opened with `O_NOFOLLOW`, so a symlink swapped in while a tree is backed up
//! is never followed, and refuses a hard-linked file not owned by the owner of the tree's
//! root (its other name could be a file that owner must not read).
//! Everything streams: file content is read once, hashed on the way in and on the way
//! out, and compressed by several threads.
//!
//! # Archive format (version 3)
//!
//! This is a public contract: archives outlive the berth that wrote them.
//!
//! An archive is named `<app>-<version>-<YYYYMMDDTHHMMSSZ>.berth.tar.zst`, the time in
//! UTC ([`archive_name`], [`parse_archive_name`]). Its content is, in this order:
//!
//! 1. **zstd frames** (RFC 8878) with the content checksum flag set, so any damaged byte
//!    fails decompression. Decompressed and concatenated, they are
//! 2. **a tar stream** (POSIX ustar headers, with GNU `././@LongLink` entries of type `L`
//!    and `K` for paths and symlink targets longer than 100 bytes), ended by two zero
//!    blocks. Its entries are:
//!    - regular files, directories (named with a trailing `/`) and symlinks only, with their
//!      permission bits (never setuid, setgid or sticky: the writer leaves them out and
//!      extraction ignores them) and mtime (whole seconds). Owner ids are recorded but never
//!      trusted: whoever restores decides ownership;
//!    - paths are relative and `/`-separated, with no empty, `.` or `..` component;
//!    - symlink targets are relative, with `..` components only at their start and never
//!      more of them than the link has parent directories, so a link cannot point outside
//!      the archive;
//!    - the **last** entry is `berth-backup.json`, the archive manifest
//!      ([`ArchiveManifest`]), described below.
//! 3. **one zstd skippable frame**: the 4 bytes `5B 2A 4D 18` (magic `0x184D2A5B`, little
//!    endian), the payload length as 4 bytes little endian, then the payload:
//!    - the manifest JSON, byte for byte the content of `berth-backup.json`;
//!    - the **data length**: the number of bytes before this frame (all the zstd frames
//!      of 1.), as 8 bytes little endian;
//!    - the **data SHA-256**: the 32-byte SHA-256 of those bytes, exactly as stored;
//!    - the 64-byte ed25519 signature (RFC 8032, checked strictly) over the bytes
//!      `berth archive index v3` and a NUL, then the data length and data SHA-256 as
//!      above, then the JSON;
//!    - the signer's 32-byte public key;
//!    - the JSON's length in bytes as 8 bytes little endian;
//!    - the 8 ASCII bytes `BERTHSG3`.
//!
//!    Nothing follows.
//!
//! The signature covers every byte of the file: the compressed data through its length
//! and SHA-256, the index itself directly, and the frame's remaining fields (magic,
//! lengths, public key) must have the one value that goes with them. A changed byte
//! anywhere is refused, including one that changes nothing once decompressed (zstd
//! encodes the same content in many ways, and the tar fields berth does not compare,
//! such as mtimes, are still covered). The manifest lists every entry's SHA-256 as
//! well, so each entry's content is also checked as it is decompressed. The public key
//! in the frame only says which key claims to have signed: it is trusted only if it is
//! one of the caller's keys.
//!
//! ## Earlier formats
//!
//! Archives are written in format 3 only. The previous berth wrote **format 2**, which is
//! still read (listed, verified and extracted), so that its backups can be restored: its
//! index frame is the same but for two fields. It has no data length nor data SHA-256,
//! its trailer magic is `BERTHSIG`, the manifest's `format` is 2, and its signature is over
//! the bytes `berth archive index v2` and a NUL, then the JSON. The signature therefore
//! covers the manifest, hence every entry's path, kind, mode, size, SHA-256 of its content
//! and symlink target, all checked as for format 3, but not the compressed bytes as
//! stored: bytes that decode to the same entries (another zstd encoding, a changed mtime
//! or owner in a tar header, a skippable frame) are not noticed. [`VerifyReport`] and
//! [`Archive::format_note`] say so, advising a new backup. A reader tells the formats
//! apart by the trailer magic; the manifest's `format` must be the same, and the
//! contexts keep a signature of one format from being valid as the other's.
//! **Format 1** (no signature nor public key, ending in `BERTHIDX`) cannot be
//! authenticated and is refused with the reason ([`ArchiveError::Unsigned`]).
//!
//! Standard tools ignore skippable frames, so `zstd -dc x.berth.tar.zst | tar -x` restores
//! an archive without berth. The index makes listing cheap: [`read_index`] reads the 152
//! bytes that end the file (112 in format 2), then the frame header and manifest before
//! them, whatever the archive's size.
//!
//! The manifest is a pretty-printed JSON object followed by a newline:
//!
//! ```json
//! {
//!   "format": 3,
//!   "meta": { "app": "netbox", "app_version": "4.2.1", "created": "2025-03-04T05:06:07Z" },
//!   "entries": [
//!     { "path": "data", "kind": "dir", "size": 0, "mode": "0755" },
//!     { "path": "data/a.txt", "kind": "file", "size": 3, "sha256": "ba7816bf…", "mode": "0640" },
//!     { "path": "data/l", "kind": "symlink", "size": 0, "mode": "0777", "target": "a.txt" }
//!   ]
//! }
//! ```
//!
//! - `format`: 3 (2 in a format 2 archive). A reader refuses other numbers, and one that
//!   is not its index frame's format.
//! - `meta`: the caller's free-form object ([`Meta`]); berth always sets `app`,
//!   `app_version` and `created` (RFC 3339, UTC).
//! - `entries`: every tar entry before the manifest, in archive order: `path`; `kind`
//!   (`file`, `dir` or `symlink`); `size` (bytes of content, 0 for the other kinds);
//!   `sha256` of the content, lowercase hex (files only); `mode`, the permission bits as a
//!   4-digit octal string; `target` (symlinks only).
//!
//! An archive is valid when its index is signed by a trusted key, the bytes before the
//! index frame have the signed length and SHA-256 (format 3), its zstd frames decompress with their
//! checksums and use every one of those bytes, each tar entry matches its manifest entry
//! in order (path, kind, mode, size, SHA-256, target) with none missing or extra, the
//! `berth-backup.json` entry equals the index, and only zero bytes follow the tar's end
//! ([`verify`]).
//!
//! # Example
//!
//! ```
//! use berth_archive::{ArchiveWriter, Meta, SigningKey, WriteOptions, archive_name, extract, read_index, verify};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let key = SigningKey::generate()?;
//! let trusted = [key.public_key()];
//! let created = jiff::Timestamp::now();
//! let path = tmp.path().join(archive_name("netbox", "4.2.1", created));
//!
//! let mut writer = ArchiveWriter::create(&path, WriteOptions::default())?;
//! writer.add_bytes("site/berth.toml", b"[site]\n", 0o640)?;
//! let written = writer.finish(Meta::new("netbox", "4.2.1", created), &key)?;
//!
//! // Listing only: not authenticated.
//! assert_eq!(read_index(&written.path)?.manifest.meta.app(), Some("netbox"));
//! verify(&written.path, &trusted, &mut |_| {})?;
//! let dest = tmp.path().join("restore");
//! std::fs::create_dir(&dest)?;
//! extract(&written.path, &dest, &trusted, &|_| true, &mut |_| {})?;
//! assert_eq!(std::fs::read(dest.join("site/berth.toml"))?, b"[site]\n");
//! # Ok(())
//! # }
//! ```

mod decode;
mod error;
mod index;
mod manifest;
mod name;
mod path;
mod reader;
pub mod secrets;
pub mod signing;
mod tarfmt;
mod writer;

pub use error::ArchiveError;
pub use index::{
    INDEX_FRAME_MAGIC, INDEX_TRAILER_MAGIC, MAX_INDEX_BYTES, UnverifiedIndex, index_frame,
    read_index,
};
pub use manifest::{ArchiveManifest, Entry, EntryKind, FORMAT, MANIFEST_ENTRY, Meta};
pub use name::{ARCHIVE_SUFFIX, archive_name, parse_archive_name};
pub use reader::{Archive, EXTRACTED_MODE_MASK, VerifyReport, extract, read_signed_index, verify};
pub use signing::{PublicKey, SigningKey};
pub use writer::{ArchiveWriter, ProgressFn, SkipReason, Skipped, WriteOptions, Written};
