//! The index frame at the end of an archive, and reading it from the file's tail.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::ArchiveError;
use crate::manifest::{ArchiveManifest, FORMAT};

/// The magic number of the zstd skippable frame that holds the index.
pub const INDEX_FRAME_MAGIC: u32 = 0x184D_2A5B;

/// The last 8 bytes of every archive.
pub const INDEX_TRAILER_MAGIC: &[u8; 8] = b"BERTHIDX";

/// The magic number that starts a (non-skippable) zstd frame, as it appears in the file.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// Skippable frame header (magic and length) before the manifest JSON.
const FRAME_HEADER_LEN: usize = 8;
/// JSON length and trailer magic after the manifest JSON.
const TRAILER_LEN: usize = 16;

/// The index frame for a manifest serialized as `json`.
pub(crate) fn index_frame(json: &[u8]) -> Option<Vec<u8>> {
    let payload_len = u32::try_from(json.len() + TRAILER_LEN).ok()?;
    let mut frame = Vec::with_capacity(json.len() + 24);
    frame.extend_from_slice(&INDEX_FRAME_MAGIC.to_le_bytes());
    frame.extend_from_slice(&payload_len.to_le_bytes());
    frame.extend_from_slice(json);
    frame.extend_from_slice(&(json.len() as u64).to_le_bytes());
    frame.extend_from_slice(INDEX_TRAILER_MAGIC);
    Some(frame)
}

/// An index as read from an archive's tail.
pub(crate) struct Index {
    pub manifest: ArchiveManifest,
    /// The manifest JSON exactly as stored.
    pub json: Vec<u8>,
    /// Where the index frame starts: the compressed tar stream is everything before.
    pub frame_start: u64,
    /// The size of the whole file.
    pub file_len: u64,
}

/// Reads an archive's manifest from its index, reading only the end of the file.
///
/// This is cheap whatever the archive's size, which is what listing backups relies on.
/// It checks that the file is a berth archive, that it is complete (its index is there)
/// and that the index parses; it does not check the archive's content, which
/// [`crate::verify`] does.
pub fn read_index(path: &Path) -> Result<ArchiveManifest, ArchiveError> {
    let file = File::open(path).map_err(|e| ArchiveError::io("open", path, e))?;
    Ok(read_index_of(&file, path)?.manifest)
}

pub(crate) fn read_index_of(file: &File, path: &Path) -> Result<Index, ArchiveError> {
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
    let trailer_ok = file_len >= TRAILER_LEN as u64 && {
        read_at(&mut trailer, file_len - TRAILER_LEN as u64)?;
        &trailer[8..] == INDEX_TRAILER_MAGIC
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

    let json_len = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
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

    let json_len = usize::try_from(json_len)
        .map_err(|_| ArchiveError::corrupt(path, "its index is too large for this machine"))?;
    let mut json = vec![0; json_len];
    read_at(&mut json, frame_start + FRAME_HEADER_LEN as u64)?;
    let manifest = parse_manifest(&json, path)?;
    Ok(Index {
        manifest,
        json,
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
