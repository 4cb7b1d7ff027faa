//! How much memory each service really takes: the proportional set size (PSS) of
//! every process in its process group (a service is started as the leader of a group
//! of its own, so gunicorn's workers and PostgreSQL's backends count with it). PSS
//! shares each shared page among the processes mapping it, so the services' figures
//! add up to what the stack takes, unlike RSS.

use std::collections::HashMap;

/// PSS in bytes of the process groups led by `leaders`, read from `/proc` (groups
/// with no readable member are left out). One pass over `/proc`, then
/// `smaps_rollup` of each member.
pub(crate) fn pss_of_groups(leaders: &[u32]) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    if leaders.is_empty() {
        return out;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(group) = process_group(pid) else {
            continue;
        };
        if !leaders.contains(&group) {
            continue;
        }
        if let Some(pss) = pss(pid) {
            *out.entry(group).or_insert(0) += pss;
        }
    }
    out
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`, after the command in
/// parentheses, which may itself hold spaces and parentheses).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(2)?.parse().ok()
}

/// PSS of one process in bytes (`Pss:` of `/proc/<pid>/smaps_rollup`, in kB); `None`
/// for a process gone meanwhile or without a memory map (a kernel thread, a zombie).
fn pss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss(&text)
}

fn parse_pss(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|l| {
        let kb = l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim();
        kb.parse::<u64>().ok().map(|kb| kb * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_pss, process_group, pss_of_groups};

    #[test]
    fn pss_is_read_from_smaps_rollup() {
        let text = "55d0c5a4e000-7ffd9f1f8000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:               11264 kB\nPss:                4096 kB\nPss_Anon: 100 kB\n";
        assert_eq!(parse_pss(text), Some(4096 * 1024));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    /// This test's own process group: this process is in it, with a PSS above zero.
    #[test]
    fn a_group_of_this_process_has_a_pss() {
        let me = std::process::id();
        let group = process_group(me).unwrap();
        let found = pss_of_groups(&[group]);
        assert!(found[&group] > 1024 * 1024, "{found:?}");
        assert!(pss_of_groups(&[]).is_empty());
    }
}
