//! The one thing in a plain `pg_dump` of the same data that differs from run to run:
//! pg_dump from 17.6, 16.10, 15.14, 14.19 and 13.22 on brackets the SQL with
//! `\restrict KEY` … `\unrestrict KEY`, a random key with which psql refuses any
//! other meta-command in between (what a hostile server could slip into a dump).
//! A seed is dumped from the build's own throwaway cluster and carried signed, so
//! there is no such server to guard against; the two lines are taken out, which also
//! lets a psql older than those releases (which knows no `\restrict`) load it.

/// `dump` without its `\restrict KEY` line (the first line starting so, before any
/// SQL) and the `\unrestrict KEY` lines of the same key; `dump` as it is when it has
/// none (an older pg_dump).
pub fn unrestricted(dump: &[u8]) -> Vec<u8> {
    let mut key = None;
    let mut out = Vec::with_capacity(dump.len());
    for line in dump.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        match key {
            None => {
                if let Some(k) = text.strip_prefix(b"\\restrict ") {
                    key = Some(k);
                    continue;
                }
                // Comments and blank lines come before it; SQL means there is none.
                if !text.is_empty() && !text.starts_with(b"--") {
                    key = Some(b"".as_slice());
                }
            }
            Some(k) if !k.is_empty() && text.strip_prefix(b"\\unrestrict ") == Some(k) => {
                continue;
            }
            Some(_) => {}
        }
        out.extend_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restrict_lines_of_the_dumps_key_are_taken_out() {
        let dump = b"--\n-- PostgreSQL database dump\n--\n\n\\restrict Abc123\n\n\
            SET x = 1;\nCOPY t (a) FROM stdin;\n\\\\unrestrict K\n\\.\n\n\
            \\unrestrict Other\n\\unrestrict Abc123\n\n";
        assert_eq!(
            unrestricted(dump),
            b"--\n-- PostgreSQL database dump\n--\n\n\n\
            SET x = 1;\nCOPY t (a) FROM stdin;\n\\\\unrestrict K\n\\.\n\n\
            \\unrestrict Other\n\n"
        );
        // Two dumps differing only in their keys are the same bytes.
        let other = String::from_utf8(dump.to_vec())
            .unwrap()
            .replace("Abc123", "Zz9");
        assert_eq!(unrestricted(other.as_bytes()), unrestricted(dump));
    }

    #[test]
    fn a_dump_without_restrict_is_kept_as_it_is() {
        let dump = b"--\n-- dump\n--\n\nSET x = 1;\n\\restrict late\n\\unrestrict late\n";
        assert_eq!(unrestricted(dump), dump);
        assert_eq!(unrestricted(b""), b"");
    }
}
