//! Process groups as `/proc` shows them: who is in one, whether it is alive, and
//! killing one that a crashed berth left behind, without ever hitting a stranger
//! that got a recycled pid.

use std::io;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub parent: u32,
    /// `R`, `S`, `D`, `T`, `Z`, ...
    pub state: char,
}

/// The fields of `/proc/<pid>/stat` after the command name.
struct Stat {
    state: char,
    parent: u32,
    pgrp: u32,
    /// Clock ticks after boot at which the process started.
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last `)`.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); starttime is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The processes of the group `pgid`, read from `/proc`; `None` without a readable `/proc`.
pub fn group_members(pgid: u32) -> Option<Vec<Member>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let members = entries
        .flatten()
        .filter_map(|entry| {
            let id: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = read_stat(id)?;
            (stat.pgrp == pgid).then_some(Member {
                pid: id,
                parent: stat.parent,
                state: stat.state,
            })
        })
        .collect();
    Some(members)
}

/// Whether a process with this pid runs (exists and is not a zombie). The pid may
/// have been reused: see [`ProcessStamp`] to ask about one process.
pub fn process_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// Whether any live (non-zombie) process remains in the group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if signal::killpg(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // `kill(-pgid, 0)` also succeeds for zombies nobody has reaped yet; on Linux,
    // look closer so an orphaned zombie does not count.
    group_members(pgid).is_none_or(|members| members.iter().any(|m| m.state != 'Z'))
}

/// A process group berth started, identified so that it can be found again by a
/// later berth process (after a crash) and told apart from an unrelated group that
/// got the same number: the leader's start time and the boot it started in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessGroup {
    /// The group id: the pid of the child that leads it.
    pub pgid: u32,
    /// The leader's start time, in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id` when it started.
    pub boot_id: String,
}

/// What [`ProcessGroup::kill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// Nothing of the group was alive.
    AlreadyGone,
    /// Live members were killed and are gone now.
    Killed,
}

impl ProcessGroup {
    /// The group led by the child `pid` (started with [`Detach`](crate::Detach), so it
    /// leads its own group), read before anything has reaped it.
    ///
    /// # Errors
    /// `/proc/<pid>/stat` or the boot id cannot be read, or `pid` leads no group.
    pub fn led_by(pid: u32) -> io::Result<Self> {
        let stat = read_stat(pid).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot read /proc/{pid}/stat"),
            )
        })?;
        if stat.pgrp != pid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("process {pid} does not lead its own process group"),
            ));
        }
        Ok(Self {
            pgid: pid,
            start_time: stat.start_time,
            boot_id: boot_id()?,
        })
    }

    /// Whether a live process of this very group remains.
    ///
    /// A group's number cannot be handed out again while any process is still in
    /// the group, so: if a process with the group's number lives and started at
    /// another time, the number was reused and this group is gone; if none lives, any
    /// process still in a group of that number is a leftover of this one.
    pub fn is_alive(&self) -> bool {
        if boot_id().ok().as_deref() != Some(self.boot_id.as_str()) {
            return false;
        }
        if let Some(leader) = read_stat(self.pgid)
            && leader.start_time != self.start_time
        {
            return false;
        }
        group_alive(self.pgid)
    }

    /// `SIGKILL` to every process of the group if it [is alive](Self::is_alive), then
    /// wait up to `within` until none is left.
    ///
    /// # Errors
    /// Some process of the group is still alive after `within` (one in uninterruptible
    /// sleep on a hung file system, say).
    pub fn kill(&self, within: Duration) -> io::Result<Killed> {
        if !self.is_alive() {
            return Ok(Killed::AlreadyGone);
        }
        let Ok(raw) = i32::try_from(self.pgid) else {
            return Ok(Killed::AlreadyGone);
        };
        let deadline = Instant::now() + within;
        let mut pause = Duration::from_millis(5);
        loop {
            // Again each round: a member may have forked before the first signal landed.
            let _ = signal::killpg(Pid::from_raw(raw), Signal::SIGKILL);
            if !group_alive(self.pgid) {
                return Ok(Killed::Killed);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "process group {} is still alive {} ms after SIGKILL",
                        self.pgid,
                        within.as_millis()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// A process told apart from any later one that gets its pid: the pid and the
/// process's start time (within one boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStamp {
    /// The pid.
    pub pid: u32,
    /// Its start time, in clock ticks after boot.
    pub start_time: u64,
}

impl ProcessStamp {
    /// The calling process.
    ///
    /// # Errors
    /// `/proc/self/stat` cannot be read.
    pub fn current() -> io::Result<Self> {
        let pid = std::process::id();
        read_stat(pid)
            .map(|stat| Self {
                pid,
                start_time: stat.start_time,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "cannot read /proc/self/stat"))
    }

    /// Whether this very process still runs (not a zombie), in the boot it started in
    /// (checked by the caller, see [`ProcessGroup::boot_id`]).
    pub fn is_alive(&self) -> bool {
        read_stat(self.pid)
            .is_some_and(|stat| stat.start_time == self.start_time && stat.state != 'Z')
    }
}

/// This boot's id, as [`ProcessGroup::boot_id`] records it.
///
/// # Errors
/// `/proc/sys/kernel/random/boot_id` cannot be read.
pub fn current_boot_id() -> io::Result<String> {
    boot_id()
}

/// This boot's id: start times count from boot, so a record from an earlier boot
/// names nothing alive.
fn boot_id() -> io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned())
}
