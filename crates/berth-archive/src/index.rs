//! The index frame at the end of an archive, and reading it from the file's tail.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::manifest::{ArchiveManifest, FORMAT};
use crate::signing::{DataDigest, PublicKey, Signed, SigningKey};

/// The magic number of the zstd skippable frame that holds the index.
pub const INDEX_FRAME_MAGIC: u32 = 0x184D_2A5B;

/// The last 8 bytes of every archive this crate writes (format 3).
pub const INDEX_TRAILER_MAGIC: &[u8; 8] = FORMAT_3.trailer_magic;

/// The last 8 bytes of a format 1 archive, which had no signature: recognised only to
/// refuse it with a clear reason.
const FORMAT1_TRAILER_MAGIC: &[u8; 8] = b"BERTHIDX";

/// The magic number that starts a (non-skippable) zstd frame, as it appears in the file.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// Skippable frame header (magic and length) before the manifest JSON.
const FRAME_HEADER_LEN: usize = 8;

/// How one archive format lays out and signs its index frame: everything in which the
/// formats this crate reads differ. The frame is, in order: the skippable frame header,
/// the manifest JSON, the length (8 bytes) and SHA-256 of the data before the frame if
/// the format records them, the signature (64), the signer's public key (32), the JSON's
/// length (8) and the trailer magic (8).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FrameFormat {
    /// The format number, which the manifest's `format` must give too.
    pub number: u32,
    /// The last 8 bytes of the file.
    pub trailer_magic: &'static [u8; 8],
    /// What the signed message starts with, different for every format.
    pub context: &'static [u8],
    /// Whether the frame records the length and SHA-256 of the compressed data before it,
    /// and the signature covers them.
    pub data_digest: bool,
    /// For reports: what the signature of this format does not cover, if anything.
    pub note: Option<&'static str>,
}

impl FrameFormat {
    /// The bytes after the manifest JSON.
    pub const fn trailer_len(&self) -> usize {
        let digest = if self.data_digest { 8 + 32 } else { 0 };
        digest + 64 + 32 + 8 + 8
    }

    /// The format whose trailer magic the last 8 bytes of a file are, if any: format 1's
    /// is refused, with the reason.
    fn of_trailer_magic(
        magic: [u8; 8],
        path: &Path,
    ) -> Result<Option<&'static Self>, ArchiveError> {
        if &magic == FORMAT1_TRAILER_MAGIC {
            return Err(ArchiveError::Unsigned {
                path: path.to_owned(),
            });
        }
        Ok(READABLE.into_iter().find(|f| f.trailer_magic == &magic))
    }

    /// Splits the bytes after the manifest JSON ([`Self::trailer_len`] of them) into their
    /// fields. The fields every format has end the trailer; the data digest, in the
    /// formats that record it, comes before them.
    fn parse_trailer(&self, trailer: &[u8]) -> Trailer {
        let (digest, shared) = trailer.split_at(trailer.len() - (64 + 32 + 8 + 8));
        Trailer {
            data: self.data_digest.then(|| DataDigest {
                len: u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")),
                sha256: digest[8..40].try_into().expect("32 bytes"),
            }),
            signature: shared[..64].try_into().expect("64 bytes"),
            signer: shared[64..96].try_into().expect("32 bytes"),
            json_len: u64::from_le_bytes(shared[96..104].try_into().expect("8 bytes")),
        }
    }
}

/// The fields of an index frame after its manifest JSON, as stored.
struct Trailer {
    data: Option<DataDigest>,
    signature: [u8; 64],
    signer: [u8; 32],
    json_len: u64,
}

/// The format this crate writes: the signature covers the index and, through their
/// length and SHA-256, the compressed bytes before it.
pub(crate) const FORMAT_3: FrameFormat = FrameFormat {
    number: FORMAT,
    trailer_magic: b"BERTHSG3",
    context: b"berth archive index v3\0",
    data_digest: true,
    note: None,
};

/// The previous format, still read (never written): the signature covers the index, whose
/// entries carry each one's content SHA-256, but not the compressed bytes as stored.
pub(crate) const FORMAT_2: FrameFormat = FrameFormat {
    number: 2,
    trailer_magic: b"BERTHSIG",
    context: b"berth archive index v2\0",
    data_digest: false,
    note: Some(
        "archive format 2: its signature covers every entry's path, mode, size and content \
         (SHA-256), but not the compressed bytes as stored, so a re-encoding of the same \
         content or a changed modification time would go unnoticed; take a new backup \
         (`berth backup create`), in format 3, whose signature covers every byte",
    ),
};

/// The formats a reader accepts, told apart by their trailer magic.
const READABLE: [&FrameFormat; 2] = [&FORMAT_3, &FORMAT_2];

/// The longest trailer of the formats read.
const MAX_TRAILER_LEN: usize = FORMAT_3.trailer_len();

/// The index frame that ends an archive whose compressed tar stream is `data` and whose
/// manifest JSON is `json`, signed with `key`; `None` if `json` is over
/// [`MAX_INDEX_BYTES`]. For tools and tests that assemble archives themselves:
/// [`crate::ArchiveWriter`] writes it. The archive is `data` followed by this frame.
pub fn index_frame(data: &[u8], json: &[u8], key: &SigningKey) -> Option<Vec<u8>> {
    let digest = DataDigest {
        len: data.len() as u64,
        sha256: Sha256::digest(data).into(),
    };
    signed_frame(&FORMAT_3, Some(digest), json, key)
}

/// The index frame of `format` after compressed data whose length and SHA-256 are `data`
/// (`Some` exactly when the format records them); `None` if `json` is over
/// [`MAX_INDEX_BYTES`]. Archives are written in [`FORMAT_3`] only.
pub(crate) fn signed_frame(
    format: &FrameFormat,
    data: Option<DataDigest>,
    json: &[u8],
    key: &SigningKey,
) -> Option<Vec<u8>> {
    assert_eq!(
        data.is_some(),
        format.data_digest,
        "the format's data digest"
    );
    if json.len() as u64 > MAX_INDEX_BYTES {
        return None;
    }
    let trailer_len = format.trailer_len();
    let payload_len = u32::try_from(json.len() + trailer_len).ok()?;
    let signed = Signed {
        context: format.context,
        data,
        json,
    };
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + json.len() + trailer_len);
    frame.extend_from_slice(&INDEX_FRAME_MAGIC.to_le_bytes());
    frame.extend_from_slice(&payload_len.to_le_bytes());
    frame.extend_from_slice(json);
    if let Some(data) = data {
        frame.extend_from_slice(&data.len.to_le_bytes());
        frame.extend_from_slice(&data.sha256);
    }
    frame.extend_from_slice(&key.sign_index(signed));
    frame.extend_from_slice(&key.public_key().to_bytes());
    frame.extend_from_slice(&(json.len() as u64).to_le_bytes());
    frame.extend_from_slice(format.trailer_magic);
    Some(frame)
}

/// The largest index (manifest JSON) a reader accepts: far more than any real backup's
/// entry list needs, and small enough that a crafted length cannot make a reader
/// allocate gigabytes before the signature is checked.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// An index as read from an archive's tail, before anything in it is parsed.
pub(crate) struct RawIndex {
    /// The format its trailer magic names.
    format: &'static FrameFormat,
    /// The manifest JSON exactly as stored.
    json: Vec<u8>,
    /// The length and SHA-256 of the compressed data before the index frame, as the index
    /// records them (in the formats that do).
    data: Option<DataDigest>,
    /// The key whose signature over all of that the index carries.
    signer: PublicKey,
    signature: [u8; 64],
    frame_start: u64,
    file_len: u64,
}

/// An index whose manifest was parsed: authenticated when it came from
/// [`RawIndex::authenticate`].
pub(crate) struct Index {
    /// The archive's format, as its trailer and its manifest both give it.
    pub format: &'static FrameFormat,
    pub manifest: ArchiveManifest,
    /// The manifest JSON exactly as stored.
    pub json: Vec<u8>,
    /// The key that signed `json` (a trusted one, once authenticated).
    pub signer: PublicKey,
    /// The SHA-256 of the compressed tar stream (every byte before the index frame), as
    /// the index records it (format 3; `None` in format 2, which does not record it): once
    /// authenticated, what reading the stream must find.
    pub data_sha256: Option<[u8; 32]>,
    /// Where the index frame starts: the compressed tar stream is everything before.
    pub frame_start: u64,
    /// The size of the whole file.
    pub file_len: u64,
}

impl RawIndex {
    /// Checks that the index is signed by one of `trusted`, over the raw bytes as its
    /// format defines the signed message, and only then parses it: nothing in it, not even
    /// its JSON syntax, is looked at before.
    pub fn authenticate(self, path: &Path, trusted: &[PublicKey]) -> Result<Index, ArchiveError> {
        if trusted.is_empty() {
            return Err(ArchiveError::NoTrustedKey {
                path: path.to_owned(),
            });
        }
        let signed = Signed {
            context: self.format.context,
            data: self.data,
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
        if let Some(data) = self.data
            && data.len != self.frame_start
        {
            return Err(ArchiveError::corrupt(
                path,
                format!(
                    "its signed index follows {} bytes of compressed data, but {} bytes \
                     precede it in the file: bytes were inserted or removed",
                    data.len, self.frame_start
                ),
            ));
        }
        self.parse_unverified(path)
    }

    /// Parses the index without checking its signature: for listing only.
    pub fn parse_unverified(self, path: &Path) -> Result<Index, ArchiveError> {
        let manifest = parse_manifest(&self.json, self.format, path)?;
        Ok(Index {
            format: self.format,
            manifest,
            json: self.json,
            signer: self.signer,
            data_sha256: self.data.map(|d| d.sha256),
            frame_start: self.frame_start,
            file_len: self.file_len,
        })
    }
}

/// An archive's index as read by [`read_index`]: **not authenticated**.
///
/// Its signature has not been checked against any trusted key, so everything in it may
/// have been written by whoever could write the file. Use it to list archives, never to
/// decide what to restore or where: [`crate::read_signed_index`], [`crate::verify`] and
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
/// It checks that the file is a berth archive of a format this crate reads (2 or 3), that
/// it is complete (its index is there) and that the index parses; it does not check the signature nor the
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
    let mut magic = [0; 8];
    if file_len >= 8 {
        read_at(&mut magic, file_len - 8)?;
    }
    let format =
        FrameFormat::of_trailer_magic(magic, path)?.filter(|f| file_len >= f.trailer_len() as u64);
    let Some(format) = format else {
        return if starts_like_zstd()? {
            Err(truncated("it ends before its index"))
        } else {
            Err(ArchiveError::NotAnArchive {
                path: path.to_owned(),
                reason: "it does not start with a zstd frame".to_owned(),
            })
        };
    };
    let trailer_len = format.trailer_len();
    let mut trailer = [0; MAX_TRAILER_LEN];
    let trailer = &mut trailer[..trailer_len];
    read_at(trailer, file_len - trailer_len as u64)?;

    let Trailer {
        data,
        signature,
        signer,
        json_len,
    } = format.parse_trailer(trailer);
    let frame_len = json_len
        .checked_add((FRAME_HEADER_LEN + trailer_len) as u64)
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
    if magic != INDEX_FRAME_MAGIC || payload_len != json_len + trailer_len as u64 {
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
        format,
        json,
        data,
        signer,
        signature,
        frame_start,
        file_len,
    })
}

fn parse_manifest(
    json: &[u8],
    frame: &FrameFormat,
    path: &Path,
) -> Result<ArchiveManifest, ArchiveError> {
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
    if format > FORMAT {
        return Err(ArchiveError::UnsupportedFormat {
            path: path.to_owned(),
            format,
            supported: FORMAT,
        });
    }
    if format != frame.number {
        return Err(ArchiveError::corrupt(
            path,
            format!(
                "its index says format {format}, but its index frame is of format {}",
                frame.number
            ),
        ));
    }
    serde_json::from_slice(json)
        .map_err(|e| ArchiveError::corrupt(path, format!("its index is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format 2 archive written by the previous berth (`tests/fixtures/format2`).
    const FIXTURE: &[u8] =
        include_bytes!("../tests/fixtures/format2/demo-1.0-20250601T120000Z.berth.tar.zst");

    /// The fixture's compressed data and manifest JSON.
    fn fixture_parts() -> (&'static [u8], &'static [u8]) {
        let trailer_len = FORMAT_2.trailer_len();
        let json_len = u64::from_le_bytes(
            FIXTURE[FIXTURE.len() - 16..FIXTURE.len() - 8]
                .try_into()
                .unwrap(),
        );
        let json_len = usize::try_from(json_len).unwrap();
        let frame_start = FIXTURE.len() - FRAME_HEADER_LEN - trailer_len - json_len;
        let json_start = frame_start + FRAME_HEADER_LEN;
        (
            &FIXTURE[..frame_start],
            &FIXTURE[json_start..json_start + json_len],
        )
    }

    /// Reads and authenticates `data` followed by `frame` against `key`.
    fn read(data: &[u8], frame: &[u8], key: &SigningKey) -> Result<Index, ArchiveError> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.tar.zst");
        std::fs::write(&path, [data, frame].concat()).unwrap();
        let file = File::open(&path).unwrap();
        read_index_of(&file, &path)?.authenticate(&path, &[key.public_key()])
    }

    #[test]
    fn format_2_frames_are_laid_out_as_the_previous_berth_wrote_them() {
        let (data, json) = fixture_parts();
        let key = SigningKey::generate().unwrap();
        let frame = signed_frame(&FORMAT_2, None, json, &key).unwrap();
        let written = &FIXTURE[data.len()..];
        assert_eq!(frame.len(), written.len());
        // All but the signature and the public key, which are another key's.
        let keyed = frame.len() - 16 - 32 - 64..frame.len() - 16;
        assert_eq!(frame[..keyed.start], written[..keyed.start]);
        assert_eq!(frame[keyed.end..], written[keyed.end..]);
        assert_eq!(&frame[frame.len() - 8..], b"BERTHSIG");

        let index = read(data, &frame, &key).unwrap();
        assert_eq!(index.format, &FORMAT_2);
        assert_eq!(index.manifest.format, 2);
        assert_eq!(index.data_sha256, None);
        assert_eq!(index.frame_start, data.len() as u64);
    }

    #[test]
    fn the_manifest_must_give_its_frame_s_format() {
        let (data, json) = fixture_parts();
        let key = SigningKey::generate().unwrap();
        let json3 =
            String::from_utf8(json.to_vec())
                .unwrap()
                .replacen("\"format\": 2", "\"format\": 3", 1);
        assert_ne!(json3.as_bytes(), json);
        let digest = DataDigest {
            len: data.len() as u64,
            sha256: Sha256::digest(data).into(),
        };
        // Each manifest in its own format's frame is read; in the other's, refused even
        // though the signature is valid.
        for (format, digest, good, bad) in [
            (&FORMAT_2, None, json, json3.as_bytes()),
            (&FORMAT_3, Some(digest), json3.as_bytes(), json),
        ] {
            let frame = signed_frame(format, digest, good, &key).unwrap();
            assert_eq!(read(data, &frame, &key).unwrap().format, format);
            let frame = signed_frame(format, digest, bad, &key).unwrap();
            let err = read(data, &frame, &key).unwrap_err();
            assert!(
                err.to_string().contains(&format!(
                    "but its index frame is of format {}",
                    format.number
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn every_format_has_its_own_magic_and_context() {
        for (i, a) in READABLE.iter().enumerate() {
            for b in &READABLE[i + 1..] {
                assert_ne!(a.trailer_magic, b.trailer_magic);
                assert_ne!(a.context, b.context);
                assert_ne!(a.number, b.number);
            }
            assert_ne!(a.trailer_magic, FORMAT1_TRAILER_MAGIC);
            assert!(a.trailer_len() <= MAX_TRAILER_LEN);
        }
        assert_eq!(FORMAT_3.number, FORMAT);
        assert_eq!(FORMAT_2.trailer_len(), 112);
        assert_eq!(FORMAT_3.trailer_len(), 152);
    }
}
