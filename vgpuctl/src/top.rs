//! `vgpuctl top [--hook-path DIR] [--once] [--json] [FILE...]`: a live view of every
//! container slice on the node, one row per container and device: memory limit and use
//! (data, context, module), SM limit and measured share, the processes (host pids, alive or
//! stale), the last kernel, the priority and whether the node monitor holds the container's
//! launches.
//!
//! The terminal is driven directly (termios through libc, ANSI escapes: alternate screen,
//! cursor home, erase to end of line): a table redrawn once a second needs nothing more, and
//! it keeps vgpuctl free of a TUI dependency. Keys: `m` used, `l` limit, `u` SM share,
//! `n` name, `k` last kernel, `p` priority, `r` reverse, `q` (or Ctrl-C) quit.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_layout::RECENT_KERNEL_HOLD;

use crate::node::{self, DeviceRow, Slice};

const USAGE: &str = "usage: vgpuctl top [--hook-path DIR] [--once] [--json] [FILE...]";
const MIB: u64 = 1 << 20;

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub pod_uid: String,
    pub container: String,
    pub path: String,
    pub dev: DeviceRow,
    pub priority: i32,
    /// The node monitor wrote `recent_kernel = -1`: launches are held.
    pub hold: bool,
    pub last_kernel_time: u64,
    /// The region could not be read (the row then has no device figures).
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Used,
    Limit,
    Share,
    Kernel,
    Priority,
}

impl SortKey {
    fn from_key(c: u8) -> Option<SortKey> {
        Some(match c {
            b'n' => SortKey::Name,
            b'm' => SortKey::Used,
            b'l' => SortKey::Limit,
            b'u' => SortKey::Share,
            b'k' => SortKey::Kernel,
            b'p' => SortKey::Priority,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Used => "used",
            SortKey::Limit => "limit",
            SortKey::Share => "sm share",
            SortKey::Kernel => "last kernel",
            SortKey::Priority => "priority",
        }
    }
}

pub fn rows(slices: &[Slice]) -> Vec<Row> {
    let mut out = Vec::new();
    for s in slices {
        let base = Row {
            pod_uid: s.pod_uid.clone(),
            container: s.container.clone(),
            path: s.path.display().to_string(),
            dev: DeviceRow::default(),
            priority: 0,
            hold: false,
            last_kernel_time: 0,
            error: None,
        };
        match &s.region {
            Err(e) => out.push(Row {
                error: Some(e.clone()),
                ..base
            }),
            Ok(snap) => {
                for dev in node::device_rows(snap) {
                    out.push(Row {
                        dev,
                        priority: snap.priority,
                        hold: snap.recent_kernel == RECENT_KERNEL_HOLD,
                        last_kernel_time: snap.last_kernel_time,
                        ..base.clone()
                    });
                }
            }
        }
    }
    out
}

/// Sorts rows: by name ascending; figures descending (biggest first); the most recent
/// kernel first; priority ascending (lower = higher priority). Ties by name, then device.
pub fn sort(rows: &mut [Row], key: SortKey, reverse: bool) {
    let name = |r: &Row| (r.pod_uid.clone(), r.container.clone(), r.dev.index);
    rows.sort_by(|a, b| {
        let primary = match key {
            SortKey::Name => std::cmp::Ordering::Equal,
            SortKey::Used => b.dev.total.cmp(&a.dev.total),
            SortKey::Limit => b.dev.limit.cmp(&a.dev.limit),
            SortKey::Share => b.dev.sm_util.cmp(&a.dev.sm_util),
            SortKey::Kernel => b.last_kernel_time.cmp(&a.last_kernel_time),
            SortKey::Priority => a.priority.cmp(&b.priority),
        };
        primary.then_with(|| name(a).cmp(&name(b)))
    });
    if reverse {
        rows.reverse();
    }
}

fn mib(b: u64) -> String {
    if b.is_multiple_of(MIB) {
        format!("{}", b / MIB)
    } else {
        format!("{:.1}", b as f64 / MIB as f64)
    }
}

/// Keeps the end of a long name (paths differ at the end).
fn tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else {
        let keep: String = s.chars().skip(n - (width - 2)).collect();
        format!("..{keep}")
    }
}

fn processes(pids: &[(i32, bool)]) -> String {
    let alive: Vec<String> = pids
        .iter()
        .filter(|p| p.1)
        .map(|p| p.0.to_string())
        .collect();
    let stale: Vec<String> = pids
        .iter()
        .filter(|p| !p.1)
        .map(|p| p.0.to_string())
        .collect();
    let mut s = format!("{} alive", alive.len());
    if !alive.is_empty() {
        let _ = write!(s, ": {}", alive.join(" "));
    }
    if !stale.is_empty() {
        let _ = write!(s, "; {} stale: {}", stale.len(), stale.join(" "));
    }
    s
}

/// The table (header line and one line per row), without terminal escapes.
pub fn table(rows: &[Row], now_secs: u64) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<10} {:<20} {:>3} {:>9} {:>9} {:>9} {:>7} {:>7} {:>5} {:>4} {:>8} {:>4} {:<4} PROCESSES",
        "POD",
        "CONTAINER",
        "DEV",
        "LIMIT MiB",
        "USED MiB",
        "DATA",
        "CTX",
        "MOD",
        "SMLIM",
        "SM%",
        "KERNEL",
        "PRIO",
        "HOLD"
    )];
    for r in rows {
        let pod = if r.pod_uid.is_empty() {
            "-".to_string()
        } else {
            r.pod_uid.chars().take(10).collect()
        };
        let ctr = tail(&r.container, 20);
        if let Some(e) = &r.error {
            lines.push(format!("{pod:<10} {ctr:<20} unreadable: {e}"));
            continue;
        }
        let d = &r.dev;
        let limit = if d.limit == 0 {
            "-".into()
        } else {
            mib(d.limit)
        };
        let smlim = if d.sm_limit == 0 {
            "-".into()
        } else {
            format!("{}%", d.sm_limit)
        };
        let kernel = if r.last_kernel_time == 0 {
            "-".into()
        } else {
            format!("{}s ago", now_secs.saturating_sub(r.last_kernel_time))
        };
        lines.push(format!(
            "{pod:<10} {ctr:<20} {:>3} {:>9} {:>9} {:>9} {:>7} {:>7} {:>5} {:>4} {:>8} {:>4} {:<4} {}",
            d.index,
            limit,
            mib(d.total),
            mib(d.data),
            mib(d.context),
            mib(d.module),
            smlim,
            d.sm_util,
            kernel,
            r.priority,
            if r.hold { "hold" } else { "run" },
            processes(&d.pids)
        ));
    }
    lines
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `--json`: every row with full names and raw figures (bytes, seconds since the epoch).
pub fn json(rows: &[Row]) -> String {
    let mut out = String::from("[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"pod_uid\":{},\"container\":{},\"path\":{}",
            json_str(&r.pod_uid),
            json_str(&r.container),
            json_str(&r.path)
        );
        if let Some(e) = &r.error {
            let _ = write!(out, ",\"error\":{}}}", json_str(e));
            continue;
        }
        let d = &r.dev;
        let _ = write!(
            out,
            ",\"device\":{},\"uuid\":{},\"limit_bytes\":{},\"used_bytes\":{},\"data_bytes\":{},\"context_bytes\":{},\"module_bytes\":{},\"sm_limit\":{},\"sm_util\":{},\"last_kernel_time\":{},\"priority\":{},\"hold\":{},\"processes\":[",
            d.index,
            json_str(&d.uuid),
            d.limit,
            d.total,
            d.data,
            d.context,
            d.module,
            d.sm_limit,
            d.sm_util,
            r.last_kernel_time,
            r.priority,
            r.hold
        );
        for (j, (pid, alive)) in d.pids.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"pid\":{pid},\"alive\":{alive}}}",
                if j > 0 { "," } else { "" }
            );
        }
        out.push_str("]}");
    }
    out.push_str("]\n");
    out
}

// ---- the live terminal --------------------------------------------------------------

static QUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    QUIT.store(true, Ordering::Relaxed);
}

extern "C" fn on_winch(_: libc::c_int) {}

/// The terminal in non-canonical, no-echo mode and on the alternate screen; restored on drop
/// (also after `q`, Ctrl-C, SIGINT, SIGTERM, SIGHUP or SIGQUIT, which end the loop instead of
/// the process).
struct Terminal {
    saved: Option<libc::termios>,
}

impl Terminal {
    fn enter() -> Terminal {
        // The handlers first: a signal between the mode change and them would end the
        // process with the terminal left raw.
        for (sig, handler) in [
            (libc::SIGINT, on_signal as extern "C" fn(libc::c_int)),
            (libc::SIGTERM, on_signal),
            (libc::SIGHUP, on_signal),
            (libc::SIGQUIT, on_signal),
            (libc::SIGWINCH, on_winch),
        ] {
            // SAFETY: installing an async-signal-safe handler (an atomic store or nothing);
            // no SA_RESTART, so a signal interrupts poll() and the loop sees it at once.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a termios we own.
        let saved = unsafe {
            if libc::isatty(0) == 1 {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) == 0 {
                    let mut raw = t;
                    raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
                    raw.c_iflag &= !(libc::IXON | libc::ICRNL);
                    raw.c_cc[libc::VMIN] = 1;
                    raw.c_cc[libc::VTIME] = 0;
                    libc::tcsetattr(0, libc::TCSANOW, &raw);
                    Some(t)
                } else {
                    None
                }
            } else {
                None
            }
        };
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l");
        let _ = out.flush();
        Terminal { saved }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
        if let Some(t) = &self.saved {
            // SAFETY: restoring the attributes read in enter().
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// (columns, rows) of the terminal on stdout.
fn size() -> (usize, usize) {
    // SAFETY: winsize is plain integers; all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize we pass, which we own.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (120, 40)
    }
}

fn frame(o: &node::Common, key: SortKey, reverse: bool) -> String {
    let slices = node::scan(&o.hook, &o.files);
    let mut rs = rows(&slices);
    sort(&mut rs, key, reverse);
    let (cols, height) = size();
    let mut lines = vec![format!(
        "vgpuctl top: {} slices, {} rows in {} | sort: {}{} | keys: m l u n k p sort, r reverse, q quit",
        slices.len(),
        rs.len(),
        node::containers_dir(&o.hook).display(),
        key.label(),
        if reverse { " (reversed)" } else { "" }
    )];
    lines.extend(table(&rs, node::now_secs()));
    let mut out = String::from("\x1b[H");
    for l in lines.iter().take(height.saturating_sub(1).max(1)) {
        let cut: String = l.chars().take(cols).collect();
        out.push_str(&cut);
        out.push_str("\x1b[K\r\n");
    }
    out.push_str("\x1b[J");
    out
}

fn live(o: &node::Common) -> Result<(), String> {
    // SAFETY: isatty has no preconditions.
    if unsafe { libc::isatty(1) } != 1 {
        return Err("top: stdout is not a terminal (use --once or --json)".into());
    }
    let term = Terminal::enter();
    let keys = term.saved.is_some();
    let (mut key, mut reverse) = (SortKey::Name, false);
    let mut out = std::io::stdout();
    'frames: while !QUIT.load(Ordering::Relaxed) {
        let _ = out.write_all(frame(o, key, reverse).as_bytes());
        let _ = out.flush();
        let next = Instant::now() + Duration::from_secs(1);
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() || QUIT.load(Ordering::Relaxed) {
                break;
            }
            if !keys {
                std::thread::sleep(left.min(Duration::from_millis(100)));
                continue;
            }
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd we own.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if n <= 0 {
                // Timeout (next frame), or EINTR: a quit signal or a resize (redraw now).
                if n < 0 {
                    continue 'frames;
                }
                break;
            }
            let mut buf = [0u8; 64];
            // SAFETY: reading into a buffer we own.
            let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                break 'frames;
            }
            for &c in &buf[..got as usize] {
                match c {
                    b'q' | b'Q' | 3 => break 'frames,
                    b'r' => reverse = !reverse,
                    c => match SortKey::from_key(c) {
                        Some(k) => key = k,
                        None => continue,
                    },
                }
            }
            continue 'frames;
        }
    }
    drop(term);
    Ok(())
}

pub fn main(args: &[String]) -> Result<(), String> {
    let (mut once, mut as_json) = (false, false);
    let Some(common) = node::parse_options(
        args,
        USAGE,
        &mut [
            node::Opt::Flag("--once", &mut once),
            node::Opt::Flag("--json", &mut as_json),
        ],
    )?
    else {
        println!("{USAGE}");
        return Ok(());
    };
    if as_json || once {
        let slices = node::scan(&common.hook, &common.files);
        let mut rs = rows(&slices);
        sort(&mut rs, SortKey::Name, false);
        if as_json {
            print!("{}", json(&rs));
        } else {
            for l in table(&rs, node::now_secs()) {
                println!("{l}");
            }
        }
        return Ok(());
    }
    live(&common)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(uid: &str, ctr: &str, total: u64, util: u64, last: u64, prio: i32) -> Row {
        Row {
            pod_uid: uid.into(),
            container: ctr.into(),
            path: "/p".into(),
            dev: DeviceRow {
                index: 0,
                uuid: "GPU-x".into(),
                limit: total * 2,
                sm_limit: 30,
                total,
                context: 64 * MIB,
                module: 0,
                data: total.saturating_sub(64 * MIB),
                sm_util: util,
                pids: vec![(100, true), (101, false)],
            },
            priority: prio,
            hold: prio == 0,
            last_kernel_time: last,
            error: None,
        }
    }

    fn order(rows: &[Row]) -> Vec<String> {
        rows.iter().map(|r| r.container.clone()).collect()
    }

    #[test]
    fn sorts_by_each_key() {
        let mut rs = vec![
            row("b", "small", 100 * MIB, 50, 10, 1),
            row("a", "big", 900 * MIB, 5, 30, 0),
            row("c", "mid", 400 * MIB, 20, 20, 2),
        ];
        sort(&mut rs, SortKey::Name, false);
        assert_eq!(order(&rs), ["big", "small", "mid"]);
        sort(&mut rs, SortKey::Used, false);
        assert_eq!(order(&rs), ["big", "mid", "small"]);
        sort(&mut rs, SortKey::Used, true);
        assert_eq!(order(&rs), ["small", "mid", "big"]);
        sort(&mut rs, SortKey::Share, false);
        assert_eq!(order(&rs), ["small", "mid", "big"]);
        sort(&mut rs, SortKey::Kernel, false);
        assert_eq!(order(&rs), ["big", "mid", "small"]);
        sort(&mut rs, SortKey::Priority, false);
        assert_eq!(order(&rs), ["big", "small", "mid"]);
        sort(&mut rs, SortKey::Limit, false);
        assert_eq!(order(&rs), ["big", "mid", "small"]);
    }

    #[test]
    fn table_shows_figures_processes_and_hold() {
        let rs = vec![row("0123456789abcdef", "trainer", 300 * MIB, 17, 95, 0)];
        let t = table(&rs, 100);
        assert_eq!(t.len(), 2);
        let l = &t[1];
        assert!(l.starts_with("0123456789 trainer "), "{l}");
        for want in [
            " 600 ", " 300 ", " 236 ", " 64 ", " 30% ", " 17 ", "5s ago", " hold ",
        ] {
            assert!(l.contains(want), "{want:?} in {l}");
        }
        assert!(l.ends_with("1 alive: 100; 1 stale: 101"), "{l}");
        let j = json(&rs);
        assert!(j.contains("\"used_bytes\":314572800"), "{j}");
        assert!(j.contains("{\"pid\":101,\"alive\":false}"), "{j}");
    }

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(
            tail("/tmp/a/very/long/path/region.cache", 12),
            "..gion.cache"
        );
        assert_eq!(tail("short", 12), "short");
        assert_eq!(mib(3 * MIB / 2), "1.5");
    }
}
