//! The index frame at the end of an archive, and reading it from the file's tail.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::manifest::{ArchiveManifest, FORMAT};
use crate::signing::{PublicKey, Signed, SigningKey};

/// The magic number of the zstd skippable frame that holds the index.
pub const INDEX_FRAME_MAGIC: u32 = 0x184D_2A5B;

/// The last 8 bytes of every (format 3) archive.
pub const INDEX_TRAILER_MAGIC: &[u8; 8] = b"BERTHSG3";

/// The last 8 bytes of a format 1 archive, which had no signature: recognised only to
/// refuse it with a clear reason.
const FORMAT1_TRAILER_MAGIC: &[u8; 8] = b"BERTHIDX";

/// The last 8 bytes of a format 2 archive, whose signature did not cover the compressed
/// bytes: recognised only to refuse it with a clear reason.
const FORMAT2_TRAILER_MAGIC: &[u8; 8] = b"BERTHSIG";

/// The magic number that starts a (non-skippable) zstd frame, as it appears in the file.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// Skippable frame header (magic and length) before the manifest JSON.
const FRAME_HEADER_LEN: usize = 8;
/// After the manifest JSON: length (8) and SHA-256 (32) of the data before the frame,
/// signature (64), signer's public key (32), JSON length (8), trailer magic (8).
const TRAILER_LEN: usize = 8 + 32 + 64 + 32 + 8 + 8;

/// The index frame that ends an archive whose compressed tar stream is `data` and whose
/// manifest JSON is `json`, signed with `key`; `None` if `json` is over
/// [`MAX_INDEX_BYTES`]. For tools and tests that assemble archives themselves:
/// [`crate::ArchiveWriter`] writes it. The archive is `data` followed by this frame.
pub fn index_frame(data: &[u8], json: &[u8], key: &SigningKey) -> Option<Vec<u8>> {
    let sha256: [u8; 32] = Sha256::digest(data).into();
    signed_frame(data.len() as u64, &sha256, json, key)
}

/// The index frame after `data_len` bytes of compressed data whose SHA-256 is
/// `data_sha256`; `None` if `json` is over [`MAX_INDEX_BYTES`].
pub(crate) fn signed_frame(
    data_len: u64,
    data_sha256: &[u8; 32],
    json: &[u8],
    key: &SigningKey,
) -> Option<Vec<u8>> {
    if json.len() as u64 > MAX_INDEX_BYTES {
        return None;
    }
    let payload_len = u32::try_from(json.len() + TRAILER_LEN).ok()?;
    let signed = Signed {
        data_len,
        data_sha256,
        json,
    };
    let mut frame = Vec::with_capacity(json.len() + FRAME_HEADER_LEN + TRAILER_LEN);
    frame.extend_from_slice(&INDEX_FRAME_MAGIC.to_le_bytes());
    frame.extend_from_slice(&payload_len.to_le_bytes());
    frame.extend_from_slice(json);
    frame.extend_from_slice(&data_len.to_le_bytes());
    frame.extend_from_slice(data_sha256);
    frame.extend_from_slice(&key.sign_index(signed));
    frame.extend_from_slice(&key.public_key().to_bytes());
    frame.extend_from_slice(&(json.len() as u64).to_le_bytes());
    frame.extend_from_slice(INDEX_TRAILER_MAGIC);
    Some(frame)
}

/// The largest index (manifest JSON) a reader accepts: far more than any real backup's
/// entry list needs, and small enough that a crafted length cannot make a reader
/// allocate gigabytes before the signature is checked.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// An index as read from an archive's tail, before anything in it is parsed.
pub(crate) struct RawIndex {
    /// The manifest JSON exactly as stored.
    json: Vec<u8>,
    /// The length of the compressed data before the index frame, as the index records it.
    data_len: u64,
    /// The SHA-256 of that data, as the index records it.
    data_sha256: [u8; 32],
    /// The key whose signature over all of that the index carries.
    signer: PublicKey,
    signature: [u8; 64],
    frame_start: u64,
    file_len: u64,
}

/// An index whose manifest was parsed: authenticated when it came from
/// [`RawIndex::authenticate`].
pub(crate) struct Index {
    pub manifest: ArchiveManifest,
    /// The manifest JSON exactly as stored.
    pub json: Vec<u8>,
    /// The key that signed `json` (a trusted one, once authenticated).
    pub signer: PublicKey,
    /// The SHA-256 of the compressed tar stream (every byte before the index frame), as
    /// the index records it: once authenticated, what reading the stream must find.
    pub data_sha256: [u8; 32],
    /// Where the index frame starts: the compressed tar stream is everything before.
    pub frame_start: u64,
    /// The size of the whole file.
    pub file_len: u64,
}

impl RawIndex {
    /// Checks that the index is signed by one of `trusted`, over the raw bytes, and only
    /// then parses it: nothing in it, not even its JSON syntax, is looked at before.
    pub fn authenticate(self, path: &Path, trusted: &[PublicKey]) -> Result<Index, ArchiveError> {
        if trusted.is_empty() {
            return Err(ArchiveError::NoTrustedKey {
                path: path.to_owned(),
            });
        }
        let signed = Signed {
            data_len: self.data_len,
            data_sha256: &self.data_sha256,
            json: &self.json,
        };
        if !self.signer.verifies_index(signed, &self.signature) {
            return Err(ArchiveError::BadSignature {
                path: path.to_owned(),
            });
        }
        if !trusted.contains(&self.signer) {
            return Err(ArchiveError::UntrustedSigner {
                path: path.to_owned(),
                signer: self.signer.to_string(),
                trusted: trusted.iter().map(ToString::to_string).collect(),
            });
        }
        if self.data_len != self.frame_start {
            return Err(ArchiveError::corrupt(
                path,
                format!(
                    "its signed index follows {} bytes of compressed data, but {} bytes \
                     precede it in the file: bytes were inserted or removed",
                    self.data_len, self.frame_start
                ),
            ));
        }
        self.parse_unverified(path)
    }

    /// Parses the index without checking its signature: for listing only.
    pub fn parse_unverified(self, path: &Path) -> Result<Index, ArchiveError> {
        let manifest = parse_manifest(&self.json, path)?;
        Ok(Index {
            manifest,
            json: self.json,
            signer: self.signer,
            data_sha256: self.data_sha256,
            frame_start: self.frame_start,
            file_len: self.file_len,
        })
    }
}

/// An archive's index as read by [`read_index`]: **not authenticated**.
///
/// Its signature has not been checked against any trusted key, so everything in it may
/// have been written by whoever could write the file. Use it to list archives, never to
/// decide what to restore or where: [`read_signed_index`], [`crate::verify`] and
/// [`crate::extract`] authenticate it first.
#[derive(Debug, Clone)]
pub struct UnverifiedIndex {
    /// The manifest, as the file claims it.
    pub manifest: ArchiveManifest,
    /// The key the file claims signed it.
    pub claimed_signer: PublicKey,
}

/// Reads an archive's manifest from its index, reading only the end of the file,
/// **without authenticating it** (see [`UnverifiedIndex`]).
///
/// This is cheap whatever the archive's size, which is what listing backups relies on.
/// It checks that the file is a berth archive of this format, that it is complete (its
/// index is there) and that the index parses; it does not check the signature nor the
/// archive's content.
pub fn read_index(path: &Path) -> Result<UnverifiedIndex, ArchiveError> {
    let file = open_archive(path)?;
    let index = read_index_of(&file, path)?.parse_unverified(path)?;
    Ok(UnverifiedIndex {
        manifest: index.manifest,
        claimed_signer: index.signer,
    })
}

/// Opens an archive for reading; a FIFO or device is refused before it could block.
pub(crate) fn open_archive(path: &Path) -> Result<File, ArchiveError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_nonblock())
        .open(path)
        .map_err(|e| ArchiveError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| ArchiveError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(ArchiveError::NotAnArchive {
            path: path.to_owned(),
            reason: "it is not a regular file".to_owned(),
        });
    }
    Ok(file)
}

fn libc_nonblock() -> i32 {
    i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0)
}

/// Refuses an archive of an earlier format, told by the last 8 bytes of the file, with the
/// reason it is not accepted.
fn refuse_earlier_formats(magic: [u8; 8], path: &Path) -> Result<(), ArchiveError> {
    if &magic == FORMAT1_TRAILER_MAGIC {
        return Err(ArchiveError::Unsigned {
            path: path.to_owned(),
        });
    }
    if &magic == FORMAT2_TRAILER_MAGIC {
        return Err(ArchiveError::ObsoleteFormat {
            path: path.to_owned(),
            format: 2,
        });
    }
    Ok(())
}

pub(crate) fn read_index_of(file: &File, path: &Path) -> Result<RawIndex, ArchiveError> {
    let read_at = |buf: &mut [u8], offset: u64| {
        file.read_exact_at(buf, offset)
            .map_err(|e| ArchiveError::io("read", path, e))
    };
    let file_len = file
        .metadata()
        .map_err(|e| ArchiveError::io("inspect", path, e))?
        .len();
    let truncated = |reason: &str| ArchiveError::Truncated {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    // A file cut within its first 4 bytes still starts like zstd if what is left of it
    // matches the magic.
    let starts_like_zstd = || -> Result<bool, ArchiveError> {
        let len = usize::try_from(file_len.min(4)).expect("at most 4");
        let mut magic = [0; 4];
        read_at(&mut magic[..len], 0)?;
        Ok(magic[..len] == ZSTD_MAGIC[..len])
    };

    if file_len == 0 {
        return Err(truncated("it is empty"));
    }
    let mut trailer = [0; TRAILER_LEN];
    let mut magic = [0; 8];
    if file_len >= 8 {
        read_at(&mut magic, file_len - 8)?;
    }
    refuse_earlier_formats(magic, path)?;
    let trailer_ok = file_len >= TRAILER_LEN as u64 && {
        read_at(&mut trailer, file_len - TRAILER_LEN as u64)?;
        &trailer[TRAILER_LEN - 8..] == INDEX_TRAILER_MAGIC
    };
    if !trailer_ok {
        return if starts_like_zstd()? {
            Err(truncated("it ends before its index"))
        } else {
            Err(ArchiveError::NotAnArchive {
                path: path.to_owned(),
                reason: "it does not start with a zstd frame".to_owned(),
            })
        };
    }

    let data_len = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let data_sha256: [u8; 32] = trailer[8..40].try_into().expect("32 bytes");
    let signature: [u8; 64] = trailer[40..104].try_into().expect("64 bytes");
    let signer: [u8; 32] = trailer[104..136].try_into().expect("32 bytes");
    let json_len = u64::from_le_bytes(trailer[136..144].try_into().expect("8 bytes"));
    let frame_len = json_len
        .checked_add((FRAME_HEADER_LEN + TRAILER_LEN) as u64)
        .filter(|&len| len <= file_len)
        .ok_or_else(|| {
            ArchiveError::corrupt(
                path,
                format!(
                    "its index claims {json_len} bytes, more than the file holds ({file_len} bytes)"
                ),
            )
        })?;
    let frame_start = file_len - frame_len;
    let mut header = [0; FRAME_HEADER_LEN];
    read_at(&mut header, frame_start)?;
    let magic = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let payload_len = u64::from(u32::from_le_bytes(header[4..].try_into().expect("4 bytes")));
    if magic != INDEX_FRAME_MAGIC || payload_len != json_len + TRAILER_LEN as u64 {
        return Err(ArchiveError::corrupt(
            path,
            "the header of its index frame is damaged",
        ));
    }
    if frame_start == 0 {
        return Err(ArchiveError::corrupt(path, "it holds an index but no data"));
    }

    if json_len > MAX_INDEX_BYTES {
        return Err(ArchiveError::corrupt(
            path,
            format!(
                "its index claims {json_len} bytes, more than the {MAX_INDEX_BYTES} a berth \
                 archive's index may have"
            ),
        ));
    }
    let json_len = usize::try_from(json_len)
        .map_err(|_| ArchiveError::corrupt(path, "its index is too large for this machine"))?;
    let mut json = vec![0; json_len];
    read_at(&mut json, frame_start + FRAME_HEADER_LEN as u64)?;
    let signer = PublicKey::from_bytes(&signer).ok_or_else(|| ArchiveError::BadSignature {
        path: path.to_owned(),
    })?;
    Ok(RawIndex {
        json,
        data_len,
        data_sha256,
        signer,
        signature,
        frame_start,
        file_len,
    })
}

fn parse_manifest(json: &[u8], path: &Path) -> Result<ArchiveManifest, ArchiveError> {
    // The format number is checked first so that a newer archive gets an "upgrade berth"
    // error, not a parse error about fields this version does not know.
    #[derive(serde::Deserialize)]
    struct FormatOnly {
        format: u32,
    }
    let format = serde_json::from_slice::<FormatOnly>(json)
        .map_err(|e| ArchiveError::corrupt(path, format!("its index is not valid: {e}")))?
        .format;
    if format < 2 {
        return Err(ArchiveError::Unsigned {
            path: path.to_owned(),
        });
    }
    if format < FORMAT {
        return Err(ArchiveError::ObsoleteFormat {
            path: path.to_owned(),
            format,
        });
    }
    if format != FORMAT {
        return Err(ArchiveError::UnsupportedFormat {
            path: path.to_owned(),
            format,
            supported: FORMAT,
        });
    }
    serde_json::from_slice(json)
        .map_err(|e| ArchiveError::corrupt(path, format!("its index is not valid: {e}")))
}
