//! Who listens on a TCP port: the sockets in `/proc/net/tcp{,6}` and the processes
//! whose descriptors hold them. Before berth sends traffic to a process it started,
//! it checks that the port is that process's: a readiness probe that answers proves
//! only that *something* listens, and a service user could have bound the port first.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The inodes of the listening sockets on `port` (any address, IPv4 and IPv6).
fn listening_inodes(port: u16) -> std::io::Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(parse_table(&text, port));
    }
    Ok(out)
}

/// The inodes of the sockets in LISTEN state (`0A`) on `port` in one table's text.
fn parse_table(text: &str, port: u16) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(hex_port, 16).ok()?;
            (p == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// The socket inodes held by the processes of process group `pgid`.
fn group_sockets(pgid: u32) -> std::io::Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(proc_pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process that left meanwhile is simply not counted.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{proc_pid}/stat")) else {
            continue;
        };
        if process_group(&stat) != Some(pgid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{proc_pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                out.insert(inode);
            }
        }
    }
    Ok(out)
}

/// Field 5 of `/proc/<pid>/stat` (after the parenthesised command name, which may
/// hold spaces and parentheses itself).
fn process_group(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `addr`'s port is listened on, and only by processes of group `pgid`: an
/// error names what else holds it.
pub fn held_only_by_group(addr: SocketAddr, pgid: u32) -> Result<(), String> {
    let listening = listening_inodes(addr.port()).map_err(|e| e.to_string())?;
    if listening.is_empty() {
        return Err(format!("nothing listens on port {}", addr.port()));
    }
    let own = group_sockets(pgid).map_err(|e| e.to_string())?;
    let foreign = listening.difference(&own).count();
    if foreign > 0 {
        return Err(format!(
            "{foreign} listening socket(s) on port {} belong to another process",
            addr.port()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4652 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 51234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4652 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   108        0 51240 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40000 1 0000000000000000 100 0 0 10 0
";

    /// Only LISTEN sockets on the port count; connections on it do not.
    #[test]
    fn the_table_gives_the_listening_sockets_of_a_port() {
        assert_eq!(parse_table(TABLE, 0x4652), [51234]);
        assert_eq!(parse_table(TABLE, 8080), [40000]);
        assert!(parse_table(TABLE, 1).is_empty());
    }

    #[test]
    fn the_process_group_comes_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4240 4240 0 -1 4194560";
        assert_eq!(process_group(stat), Some(4240));
    }

    /// A socket this process listens on is its group's; another group's is refused.
    #[test]
    fn a_listener_is_known_by_its_process_group() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let own = process_group(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        held_only_by_group(addr, own).unwrap();
        let err = held_only_by_group(addr, own + 1).unwrap_err();
        assert!(err.contains("belong to another process"), "{err}");
        drop(l);
        // Another test's fork may hold the socket until its child calls exec.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let err = loop {
            let err = held_only_by_group(addr, own).unwrap_err();
            if err.starts_with("nothing listens") || std::time::Instant::now() > deadline {
                break err;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(err.starts_with("nothing listens"), "{err}");
    }
}
