//! What a `.deb` says of itself: the `control` file of its `control.tar` member,
//! read without unpacking anything else.

use std::io::Read;
use std::path::Path;

use crate::RepoError;
use crate::deb822::Paragraph;

/// The most a control member may hold, packed or unpacked: control files are small,
/// and a member that unpacks to more is a bomb.
const CONTROL_LIMIT: u64 = 16 << 20;

/// An xz member, unpacked in memory (the xz reader has no streaming interface), at
/// most [`CONTROL_LIMIT`] bytes either way.
fn unxz(member: impl Read) -> Result<Vec<u8>, String> {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() as u64 + buf.len() as u64 > CONTROL_LIMIT {
                return Err(std::io::Error::other(
                    "the control member unpacks to over 16 MiB",
                ));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut packed = Vec::new();
    member
        .take(CONTROL_LIMIT)
        .read_to_end(&mut packed)
        .map_err(|e| e.to_string())?;
    let mut out = Capped(Vec::new());
    lzma_rs::xz_decompress(&mut packed.as_slice(), &mut out)
        .map_err(|e| format!("its control.tar.xz does not unpack ({e})"))?;
    Ok(out.0)
}

/// The control paragraph of the package at `path`.
pub fn control(path: &Path) -> Result<Paragraph, RepoError> {
    let bad = |what: String| RepoError::Input {
        what: format!("`{}` is not a Debian package: {what}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(RepoError::io("open", path))?;
    let mut archive = ar::Archive::new(file);
    let mut first = true;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| bad(format!("its ar archive is damaged ({e})")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if first {
            let mut magic = String::new();
            entry
                .by_ref()
                .take(16)
                .read_to_string(&mut magic)
                .map_err(|e| bad(e.to_string()))?;
            if name != "debian-binary" || !magic.starts_with("2.") {
                return Err(bad("it does not start with `debian-binary` 2.x".to_owned()));
            }
            first = false;
            continue;
        }
        let reader: Box<dyn Read + '_> = match name.as_str() {
            "control.tar" => Box::new(entry),
            "control.tar.gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "control.tar.zst" => {
                Box::new(zstd::stream::read::Decoder::new(entry).map_err(|e| bad(e.to_string()))?)
            }
            "control.tar.xz" => Box::new(std::io::Cursor::new(unxz(entry).map_err(bad)?)),
            n if n.starts_with("control.tar") => {
                return Err(bad(format!(
                    "its `{n}` is compressed in a way berth does not read (xz, gzip, zstd or none)"
                )));
            }
            _ => continue,
        };
        let mut tar = tar::Archive::new(reader);
        for member in tar
            .entries()
            .map_err(|e| bad(format!("its control.tar is damaged ({e})")))?
        {
            let mut member =
                member.map_err(|e| bad(format!("its control.tar is damaged ({e})")))?;
            let member_path = member.path().map_err(|e| bad(e.to_string()))?.into_owned();
            if member_path != Path::new("./control") && member_path != Path::new("control") {
                continue;
            }
            let mut text = String::new();
            member
                .by_ref()
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("its control file is not text ({e})")))?;
            let mut paragraphs = crate::deb822::parse(&text, "control")?;
            if paragraphs.len() != 1 {
                return Err(bad("its control file is not one paragraph".to_owned()));
            }
            return Ok(paragraphs.remove(0));
        }
        return Err(bad("its control.tar has no `control` file".to_owned()));
    }
    Err(bad("it has no control.tar member".to_owned()))
}
