//! Process liveness from `/proc/<pid>/stat` (state and start time, so pid reuse is detected).

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatInfo {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    pub state: u8,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses the content of `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(content: &str) -> Option<StatInfo> {
    let close = content.rfind(')')?;
    let rest = content[close + 1..]
        .split_ascii_whitespace()
        .collect::<Vec<_>>();
    // rest[0] is field 3 (state); field 22 is rest[19].
    let state = *rest.first()?.as_bytes().first()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(StatInfo { state, start_time })
}

/// Whether a parsed stat means the process is gone (zombie or dead).
pub fn is_dead_state(state: u8) -> bool {
    matches!(state, b'Z' | b'X' | b'x')
}

/// Reads `/proc/<pid>/stat`. `None` when the process does not exist.
pub fn read_stat(pid: u32) -> Option<StatInfo> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

/// Whether process `pid` that started at `start_time` is still running. A missing process, a
/// zombie, or a different start time (the pid was reused) all count as dead.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match read_stat(pid) {
        Some(st) => !is_dead_state(st.state) && (start_time == 0 || st.start_time == start_time),
        None => {
            // Unreadable for another reason than absence (e.g. hidepid): trust kill(pid, 0).
            let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
            rc == 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
    }
}

/// This process's start time (field 22 of `/proc/self/stat`), 0 when unreadable.
pub fn self_start_time() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map(|s| s.start_time)
        .unwrap_or(0)
}

/// This process's command name (`/proc/self/comm`), trimmed.
pub fn self_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, b'S');
        assert_eq!(st.start_time, 987654);
        let z = "77 (a b) Z 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55 0 0";
        let st = parse_stat(z).unwrap();
        assert!(is_dead_state(st.state));
        assert_eq!(st.start_time, 55);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn self_is_alive() {
        let me = std::process::id();
        let st = self_start_time();
        assert!(st > 0);
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
        assert!(!is_alive(0, 0));
        assert!(!is_alive(0x3fff_fff0, 0));
    }
}
