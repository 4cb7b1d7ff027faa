//! The one thing in a directory-format `pg_dump` of the same data that differs from
//! run to run: the archive header in `toc.dat` records when the dump was made, as the
//! fields of a C `struct tm` in the dumping machine's local time. A seed's header
//! carries the build's time (UTC) instead, so two builds give the same bytes.
//!
//! The header, as `WriteHead` in PostgreSQL's `pg_backup_archiver.c` writes it:
//! `PGDMP`, the archive version (major, minor, revision bytes), the integer size, the
//! offset size (from 1.7), the format byte, the compression (a byte from 1.15, an
//! integer before), then the seven `tm` fields (from 1.4). An integer is a sign byte
//! and `intSize` bytes, least significant first.

use jiff::tz::TimeZone;

/// Rewrites the creation time in the header of `toc` (a `toc.dat`) to `epoch`,
/// leaving every other byte as it is. A header this does not understand is an error,
/// not a guess.
pub fn stamp_header(toc: &mut [u8], epoch: u64) -> Result<(), String> {
    let short = || "the dump's toc.dat ends inside its header".to_owned();
    if toc.get(..5) != Some(b"PGDMP".as_slice()) {
        return Err("the dump's toc.dat is not a pg_dump archive (no PGDMP)".to_owned());
    }
    let byte = |at: usize| toc.get(at).copied().ok_or_else(short);
    let (major, minor) = (byte(5)?, byte(6)?);
    let mut at = 7;
    let revision = if major > 1 || (major == 1 && minor > 0) {
        at += 1;
        byte(7)?
    } else {
        0
    };
    let version = (major, minor, revision);
    if version < (1, 4, 0) || major > 1 {
        return Err(format!(
            "the dump's archive version {major}.{minor}.{revision} is not one berth knows \
             (1.4 to 1.x)"
        ));
    }
    let int_size = usize::from(byte(at)?);
    at += 1;
    if !(4..=8).contains(&int_size) {
        return Err(format!(
            "the dump's integers are {int_size} bytes; berth knows 4 to 8"
        ));
    }
    if version >= (1, 7, 0) {
        at += 1; // offset size
    }
    at += 1; // format
    at += if version >= (1, 15, 0) {
        1
    } else {
        1 + int_size
    };
    let time = jiff::Timestamp::from_second(i64::try_from(epoch).unwrap_or(i64::MAX))
        .map_err(|e| format!("{epoch} is not a time a dump can carry ({e})"))?
        .to_zoned_datetime(TimeZone::UTC);
    let fields = [
        i64::from(time.second()),
        i64::from(time.minute()),
        i64::from(time.hour()),
        i64::from(time.day()),
        i64::from(time.month()) - 1,
        i64::from(time.year()) - 1900,
        0, // not daylight saving time: it is UTC
    ];
    let end = at + fields.len() * (1 + int_size);
    let header = toc.get_mut(at..end).ok_or_else(short)?;
    for (field, slot) in fields.iter().zip(header.chunks_exact_mut(1 + int_size)) {
        slot[0] = u8::from(*field < 0);
        let mut magnitude = field.unsigned_abs();
        for b in &mut slot[1..] {
            *b = (magnitude & 0xff) as u8;
            magnitude >>= 8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a `toc.dat` PostgreSQL 15's pg_dump wrote (archive 1.14.0) at
    /// 2026-12-04 19:04:20 local time (UTC), then the database's name.
    const PG15: &[u8] = &[
        0x50, 0x47, 0x44, 0x4d, 0x50, 0x01, 0x0e, 0x00, 0x04, 0x08, 0x03, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x13, 0x00, 0x00,
        0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x70, 0x6f, 0x73, 0x74, 0x67,
        0x72, 0x65, 0x73,
    ];

    fn field(toc: &[u8], n: usize) -> u32 {
        let at = 16 + n * 5;
        assert_eq!(toc[at], 0, "sign of field {n}");
        u32::from_le_bytes(toc[at + 1..at + 5].try_into().unwrap())
    }

    #[test]
    fn the_time_fields_and_nothing_else_change() {
        let mut toc = PG15.to_vec();
        // Read back as the dump wrote them: 19:04:20 on 4 December 2026.
        let written: Vec<u32> = (0..7).map(|n| field(&toc, n)).collect();
        assert_eq!(written, [20, 4, 19, 4, 11, 126, 0]);
        // 1700000000 is 2023-11-14 22:13:20 UTC.
        stamp_header(&mut toc, 1_700_000_000).unwrap();
        let stamped: Vec<u32> = (0..7).map(|n| field(&toc, n)).collect();
        assert_eq!(stamped, [20, 13, 22, 14, 10, 123, 0]);
        let changed: Vec<usize> = (0..PG15.len()).filter(|&i| toc[i] != PG15[i]).collect();
        assert!(
            changed.iter().all(|&i| (16..51).contains(&i)),
            "{changed:?}"
        );
        // Stamping again gives the same bytes.
        let once = toc.clone();
        stamp_header(&mut toc, 1_700_000_000).unwrap();
        assert_eq!(toc, once);
    }

    #[test]
    fn a_header_it_does_not_know_is_refused() {
        let mut other = PG15.to_vec();
        other[0] = b'X';
        assert!(stamp_header(&mut other, 0).unwrap_err().contains("PGDMP"));
        let mut newer = PG15.to_vec();
        newer[5] = 2;
        assert!(stamp_header(&mut newer, 0).unwrap_err().contains("2.14"));
        let mut wide = PG15.to_vec();
        wide[8] = 40;
        assert!(stamp_header(&mut wide, 0).unwrap_err().contains("40 bytes"));
        assert!(
            stamp_header(&mut PG15[..30].to_vec(), 0)
                .unwrap_err()
                .contains("ends inside")
        );
        // From 1.15 the compression is one byte: the fields start four bytes earlier.
        let mut v15 = PG15.to_vec();
        v15[6] = 0x0f;
        v15.drain(12..16);
        stamp_header(&mut v15, 1_700_000_000).unwrap();
        assert_eq!(&v15[12..17], &[0, 20, 0, 0, 0]);
        assert_eq!(&v15[17..22], &[0, 13, 0, 0, 0]);
    }
}
