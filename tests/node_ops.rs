//! Operating libvgpu on a node: `vgpuctl top` (once, JSON, and live under tmux),
//! `vgpuctl exporter` scraped by a real Prometheus server, and `vgpuctl install` round trips
//! on a scratch hook path. The slices are real: processes under libvgpu over the simulated
//! GPU, each container's region where HAMi's device plugin puts it on the host
//! (`<hook>/vgpu/containers/<pod-uid>_<container>/<uuid>.cache`); figures are checked
//! against the simulator's ground truth.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testkit::{run, run_default, target_profile_dir, Child, Json, SimEnv};

const UID_A: &str = "7d0c5b1e-0000-4000-8000-00000000000a";
const UID_B: &str = "7d0c5b1e-0000-4000-8000-00000000000b";
const UID_C: &str = "7d0c5b1e-0000-4000-8000-00000000000c";

fn vgpuctl() -> Command {
    Command::new(target_profile_dir().join("vgpuctl"))
}

/// A tool the test needs: under CI its absence fails the test; elsewhere it is skipped.
fn require_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        let msg = format!("{test}: `{tool}` not found (apt-get install {tool})");
        if testkit::in_ci() {
            panic!("{msg} (required under CI)");
        }
        eprintln!("SKIP {msg}");
    }
    found
}

/// A node with three container slices:
/// - A (`trainer`, 1 GiB, 30 % SM): a 300 MiB holder and a process that ran kernels;
/// - B (`server`, 2 GiB, priority 0): a 500 MiB and a 100 MiB holder;
/// - C (`crashed`): its only process was killed -9, so its slot is stale (nobody reaps).
struct Node {
    sim: SimEnv,
    hook: PathBuf,
    a_hold: Child,
    a_launch: Child,
    b_big: Option<Child>,
    b_small: Child,
    c_pid: u32,
}

fn container_dir(hook: &Path, uid: &str, ctr: &str) -> PathBuf {
    let d = hook.join("vgpu/containers").join(format!("{uid}_{ctr}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spawn_in(sim: &SimEnv, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Child {
    let mut c = command(sim, Style::Dlopen, true);
    c.env(
        "CUDA_DEVICE_MEMORY_SHARED_CACHE",
        dir.join("0f7e6d5c-1111-4222-8333-944455556666.cache"),
    );
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args);
    let mut child = Child::spawn(&mut c, Duration::from_secs(180));
    child.wait_for_kv("ready", "1", Duration::from_secs(30));
    child
}

fn hold(bytes: u64) -> Vec<String> {
    vec!["alloc-hold".into(), bytes.to_string(), "170".into()]
}

impl Node {
    fn start() -> Node {
        let sim = machine();
        let hook = sim.dir().join("hook");
        let a = container_dir(&hook, UID_A, "trainer");
        let b = container_dir(&hook, UID_B, "server");
        let c = container_dir(&hook, UID_C, "crashed");
        let a_env = [
            ("CUDA_DEVICE_MEMORY_LIMIT", "1g"),
            ("CUDA_DEVICE_SM_LIMIT", "30"),
        ];
        let b_env = [
            ("CUDA_DEVICE_MEMORY_LIMIT", "2g"),
            ("CUDA_TASK_PRIORITY", "0"),
        ];
        let a_hold = spawn_in(&sim, &a, &a_env, &strs(&hold(300 * MIB)));
        let mut a_launch = spawn_in(&sim, &a, &a_env, &["launch-loop", "20", "wait"]);
        a_launch.send_line("go");
        a_launch.wait_for_kv("done", "1", Duration::from_secs(30));
        let b_big = spawn_in(&sim, &b, &b_env, &strs(&hold(500 * MIB)));
        let b_small = spawn_in(&sim, &b, &b_env, &strs(&hold(100 * MIB)));
        let mut c_proc = spawn_in(&sim, &c, &[], &strs(&hold(50 * MIB)));
        let c_pid = c_proc.pid();
        c_proc.kill9();
        Node {
            sim,
            hook,
            a_hold,
            a_launch,
            b_big: Some(b_big),
            b_small,
            c_pid,
        }
    }

    fn a_pids(&self) -> Vec<u32> {
        vec![self.a_hold.pid(), self.a_launch.pid()]
    }

    fn b_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.b_big.iter().map(Child::pid).collect();
        v.push(self.b_small.pid());
        v
    }

    /// The simulator's ground truth for `pids` on device 0: (context, module, data, total).
    fn truth(&self, pids: &[u32]) -> (u64, u64, u64, u64) {
        let status = self.sim.status_json();
        let mut t = (0, 0, 0, 0);
        for p in status.get("processes").map(Json::items).unwrap_or(&[]) {
            let pid = p.get("pid").and_then(Json::as_u64).unwrap_or(0) as u32;
            if !pids.contains(&pid) {
                continue;
            }
            for d in p.get("devices").map(Json::items).unwrap_or(&[]) {
                let f = |k: &str| d.get(k).and_then(Json::as_u64).unwrap_or(0);
                t.0 += f("context_bytes");
                t.1 += f("module_bytes");
                t.2 += f("data_bytes");
                t.3 += f("total_bytes");
            }
        }
        t
    }

    fn uuid(&self) -> String {
        self.sim
            .status_json()
            .at("devices/0/uuid")
            .and_then(Json::as_str)
            .expect("device uuid")
            .to_string()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn top_json(hook: &Path) -> Json {
    let out = run_default(vgpuctl().args(["top", "--json", "--hook-path"]).arg(hook));
    out.assert_success("vgpuctl top --json");
    Json::parse(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", out.stdout))
}

fn row<'a>(rows: &'a Json, container: &str) -> &'a Json {
    rows.items()
        .iter()
        .find(|r| r.get("container").and_then(Json::as_str) == Some(container))
        .unwrap_or_else(|| panic!("no row for {container} in {rows:?}"))
}

fn u(j: &Json, k: &str) -> u64 {
    j.get(k)
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("{k} missing in {j:?}"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes `recent_kernel` of a region the way HAMi's monitor does (i32 at 2008904).
fn set_recent_kernel(region: &Path, v: i32) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(region)
        .unwrap();
    f.write_all_at(&v.to_le_bytes(), 2_008_904).unwrap();
}

#[test]
fn top_once_and_json_show_every_slice_at_the_simulators_ground_truth() {
    testkit::require_sim();
    let node = Node::start();
    let region_b = container_dir(&node.hook, UID_B, "server")
        .join("0f7e6d5c-1111-4222-8333-944455556666.cache");
    set_recent_kernel(&region_b, -1);
    let rows = top_json(&node.hook);
    assert_eq!(
        rows.items().len(),
        3,
        "one row per container and device: {rows:?}"
    );

    let a = row(&rows, "trainer");
    let (ctx, module, data, total) = node.truth(&node.a_pids());
    assert_eq!(a.get("pod_uid").and_then(Json::as_str), Some(UID_A));
    assert_eq!(u(a, "used_bytes"), total, "{a:?}");
    assert_eq!(u(a, "context_bytes"), ctx, "{a:?}");
    assert_eq!(u(a, "module_bytes"), module, "{a:?}");
    assert!(module > 0, "the launching process loaded a module");
    assert_eq!(u(a, "data_bytes"), data, "{a:?}");
    assert_eq!(data, 300 * MIB);
    assert_eq!(u(a, "limit_bytes"), GIB);
    assert_eq!(u(a, "sm_limit"), 30);
    assert!(u(a, "sm_util") <= 100, "{a:?}");
    let last = u(a, "last_kernel_time");
    assert!(
        last + 120 >= unix_now() && last <= unix_now(),
        "recent kernel: {a:?}"
    );
    assert_eq!(u(a, "priority"), 1, "default priority");
    assert_eq!(a.get("hold").and_then(Json::as_bool), Some(false));
    let pids: Vec<u64> = a
        .get("processes")
        .map(Json::items)
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            assert_eq!(p.get("alive").and_then(Json::as_bool), Some(true), "{p:?}");
            u(p, "pid")
        })
        .collect();
    let mut want: Vec<u64> = node.a_pids().iter().map(|&p| u64::from(p)).collect();
    want.sort();
    let mut got = pids.clone();
    got.sort();
    assert_eq!(got, want, "host pids of A's processes");

    let b = row(&rows, "server");
    assert_eq!(u(b, "used_bytes"), node.truth(&node.b_pids()).3, "{b:?}");
    assert_eq!(u(b, "limit_bytes"), 2 * GIB);
    assert_eq!(u(b, "priority"), 0, "CUDA_TASK_PRIORITY=0");
    assert_eq!(
        b.get("hold").and_then(Json::as_bool),
        Some(true),
        "monitor hold"
    );
    assert_eq!(u(b, "last_kernel_time"), 0, "B never launched");

    let c = row(&rows, "crashed");
    let procs = c.get("processes").map(Json::items).unwrap_or(&[]);
    assert_eq!(procs.len(), 1, "{c:?}");
    assert_eq!(u(&procs[0], "pid"), u64::from(node.c_pid));
    assert_eq!(
        procs[0].get("alive").and_then(Json::as_bool),
        Some(false),
        "stale"
    );
    let dead = node.sim.status_json();
    let dead = dead
        .get("processes")
        .map(Json::items)
        .unwrap_or(&[])
        .iter()
        .find(|p| p.get("pid").and_then(Json::as_u64) == Some(u64::from(node.c_pid)))
        .and_then(|p| p.get("alive").and_then(Json::as_bool));
    assert_ne!(dead, Some(true), "the simulator agrees C's process is gone");

    // --once: the same rows as a table, for scripts.
    let out = run_default(
        vgpuctl()
            .args(["top", "--once", "--hook-path"])
            .arg(&node.hook),
    );
    out.assert_success("vgpuctl top --once");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("POD "), "{}", out.stdout);
    let a_line = lines
        .iter()
        .find(|l| l.contains(" trainer "))
        .expect("A row");
    assert!(a_line.contains(&format!(" {} ", total / MIB)), "{a_line}");
    assert!(
        a_line.contains(" 30% ") && a_line.contains(" run "),
        "{a_line}"
    );
    let b_line = lines
        .iter()
        .find(|l| l.contains(" server "))
        .expect("B row");
    assert!(
        b_line.contains(" hold ") && b_line.contains("2 alive"),
        "{b_line}"
    );
    let c_line = lines
        .iter()
        .find(|l| l.contains(" crashed "))
        .expect("C row");
    assert!(
        c_line.ends_with(&format!("0 alive; 1 stale: {}", node.c_pid)),
        "{c_line}"
    );

    // A region named on the command line is shown too; a foreign file is a row that says so.
    let junk = node.sim.dir().join("junk.cache");
    std::fs::write(&junk, b"not a region").unwrap();
    let out = run_default(
        vgpuctl()
            .args(["top", "--json", "--hook-path"])
            .arg(node.sim.dir().join("empty"))
            .arg(&region_b)
            .arg(&junk),
    );
    out.assert_success("top FILE...");
    let rows = Json::parse(&out.stdout).unwrap();
    assert_eq!(rows.items().len(), 2, "{}", out.stdout);
    assert_eq!(
        u(row(&rows, &region_b.display().to_string()), "limit_bytes"),
        2 * GIB
    );
    assert!(row(&rows, &junk.display().to_string())
        .get("error")
        .is_some());
}

#[test]
fn top_shows_the_measured_sm_share_of_a_busy_container() {
    testkit::require_sim();
    // 1 ms kernels back to back: the container keeps the simulated GPU busy, and its
    // process publishes its SM utilization (from NVML's per-process samples) once a second.
    let sim = machine().var("VGPU_SIM_KERNEL_NS", "1000000");
    let hook = sim.dir().join("hook");
    let dir = container_dir(&hook, UID_A, "busy");
    let mut busy = spawn_in(&sim, &dir, &[], &["launch-loop", "4000", "wait"]);
    busy.send_line("go");
    let deadline = Instant::now() + Duration::from_secs(8);
    let (share, last) = loop {
        let rows = top_json(&hook);
        let r = row(&rows, "busy");
        let share = u(r, "sm_util");
        if share > 50 || Instant::now() > deadline {
            break (share, u(r, "last_kernel_time"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(share > 50 && share <= 100, "measured share {share}");
    assert!(last + 5 >= unix_now(), "a kernel ran just now: {last}");
    busy.kill9();
}

// ---- tmux -------------------------------------------------------------------------------

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn capture(&self) -> String {
        let out = run(
            self.cmd().args(["capture-pane", "-p", "-t", "top"]),
            Duration::from_secs(10),
        );
        out.stdout
    }

    /// Polls the pane until `pred` holds (panics with the last screen after `limit`).
    fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + limit;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > end {
                panic!("tmux: {what} not seen within {limit:?}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, k: &str) {
        run(
            self.cmd().args(["send-keys", "-t", "top", k]),
            Duration::from_secs(10),
        )
        .assert_success("tmux send-keys");
    }

    fn alive(&self) -> bool {
        run(
            self.cmd().args(["has-session", "-t", "top"]),
            Duration::from_secs(10),
        )
        .status
        .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// Container names in screen order.
fn screen_order(screen: &str) -> Vec<&'static str> {
    let mut v = Vec::new();
    for l in screen.lines() {
        for name in ["trainer", "server", "crashed"] {
            if l.contains(&format!(" {name} ")) {
                v.push(name);
            }
        }
    }
    v
}

fn used_mib_of(screen: &str, name: &str) -> Option<u64> {
    let l = screen.lines().find(|l| l.contains(&format!(" {name} ")))?;
    // POD CONTAINER DEV LIMIT USED ...
    l.split_whitespace().nth(4)?.parse().ok()
}

#[test]
fn top_live_under_tmux_refreshes_sorts_and_quits() {
    testkit::require_sim();
    if !require_tool("top_live_under_tmux", "tmux") {
        return;
    }
    let mut node = Node::start();
    let tmux = Tmux {
        socket: format!("vgpu-top-{}", std::process::id()),
    };
    let cmd = format!(
        "{} top --hook-path {}",
        target_profile_dir().join("vgpuctl").display(),
        node.hook.display()
    );
    run(
        tmux.cmd()
            .args(["new-session", "-d", "-s", "top", "-x", "200", "-y", "40"])
            .arg(cmd),
        Duration::from_secs(10),
    )
    .assert_success("tmux new-session");

    let a_total = node.truth(&node.a_pids()).3 / MIB;
    let b_total = node.truth(&node.b_pids()).3 / MIB;
    assert!(b_total > a_total, "the scenario sorts B first by use");
    let screen = tmux.wait_for(Duration::from_secs(20), "three rows", |s| {
        screen_order(s).len() == 3
    });
    assert!(screen.contains("sort: name"), "{screen}");
    assert_eq!(
        screen_order(&screen),
        ["trainer", "server", "crashed"],
        "{screen}"
    );
    assert_eq!(used_mib_of(&screen, "trainer"), Some(a_total), "{screen}");
    assert_eq!(used_mib_of(&screen, "server"), Some(b_total), "{screen}");

    tmux.keys("m");
    let screen = tmux.wait_for(Duration::from_secs(10), "sort by used", |s| {
        s.contains("sort: used")
    });
    assert_eq!(
        screen_order(&screen),
        ["server", "trainer", "crashed"],
        "{screen}"
    );
    tmux.keys("r");
    let screen = tmux.wait_for(Duration::from_secs(10), "reversed", |s| {
        s.contains("(reversed)")
    });
    assert_eq!(
        screen_order(&screen),
        ["crashed", "trainer", "server"],
        "{screen}"
    );

    // B's big holder frees and exits: the view follows within a few refreshes.
    let big = node.b_big.take().unwrap();
    big.finish().assert_success("B's 500 MiB holder");
    let b_after = node.truth(&node.b_pids()).3 / MIB;
    assert!(b_after < b_total);
    let screen = tmux.wait_for(Duration::from_secs(10), "B's new use", |s| {
        used_mib_of(s, "server") == Some(b_after)
    });
    assert_eq!(
        screen_order(&screen),
        ["crashed", "server", "trainer"],
        "re-sorted: {screen}"
    );

    tmux.keys("q");
    let end = Instant::now() + Duration::from_secs(10);
    while tmux.alive() {
        assert!(
            Instant::now() < end,
            "q did not end top: {}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every way a live `top` ends puts the terminal back as it found it: the alternate screen
/// left, the cursor shown, canonical mode, echo and terminal signals on again.
#[test]
fn top_restores_the_terminal_on_every_exit() {
    testkit::require_sim();
    if !require_tool("top_restores_the_terminal", "tmux") {
        return;
    }
    let sim = SimEnv::new();
    for (i, how) in ["q", "C-c", "TERM", "HUP", "INT", "QUIT"]
        .iter()
        .enumerate()
    {
        let tmux = Tmux {
            socket: format!("vgpu-top-restore-{}-{i}", std::process::id()),
        };
        // After top: its exit status and the terminal's modes that top changes.
        let cmd = format!(
            "{} top --hook-path {}; echo top-exit=$?; \
             echo modes: $(stty -a | tr -s ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig|iexten|ixon|icrnl)'); \
             sleep 60",
            target_profile_dir().join("vgpuctl").display(),
            sim.dir().display()
        );
        run(
            tmux.cmd()
                .args(["new-session", "-d", "-s", "top", "-x", "200", "-y", "30"])
                .arg(cmd),
            Duration::from_secs(10),
        )
        .assert_success("tmux new-session");
        let flags = || {
            run(
                tmux.cmd().args([
                    "display-message",
                    "-p",
                    "-t",
                    "top",
                    "#{alternate_on} #{cursor_flag} #{pane_pid}",
                ]),
                Duration::from_secs(10),
            )
            .stdout
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
        };
        tmux.wait_for(Duration::from_secs(20), "top's header", |s| {
            s.contains("vgpuctl top:")
        });
        let f = flags();
        assert_eq!(
            &f[..2],
            ["1", "0"],
            "{how}: top on the alternate screen, cursor hidden"
        );
        if how.len() == 1 || how.starts_with("C-") {
            tmux.keys(how);
        } else {
            // The shell's child: top.
            let shell: u32 = f[2].parse().unwrap();
            let children =
                std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
            let top: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
            let sig = match *how {
                "TERM" => libc::SIGTERM,
                "HUP" => libc::SIGHUP,
                "INT" => libc::SIGINT,
                _ => libc::SIGQUIT,
            };
            // SAFETY: signalling a process of this test.
            assert_eq!(unsafe { libc::kill(top, sig) }, 0);
        }
        let screen = tmux.wait_for(Duration::from_secs(10), "top's end", |s| {
            s.contains("top-exit=") && s.contains("modes:")
        });
        let f = flags();
        assert_eq!(
            &f[..2],
            ["0", "1"],
            "{how}: main screen, cursor shown: {screen}"
        );
        let modes: Vec<&str> = screen
            .lines()
            .find_map(|l| l.trim().strip_prefix("modes:"))
            .unwrap()
            .split_whitespace()
            .collect();
        for m in ["icanon", "echo", "isig", "iexten", "ixon", "icrnl"] {
            assert!(modes.contains(&m), "{how}: {m} restored: {screen}");
        }
    }
}

// ---- exporter + Prometheus --------------------------------------------------------------

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An instant query through Prometheus' HTTP API: the result vector.
fn query(prom: &str, q: &str) -> Vec<Json> {
    let Some((200, body)) = http_get(prom, &format!("/api/v1/query?query={}", urlencode(q))) else {
        return Vec::new();
    };
    Json::parse(&body)
        .ok()
        .and_then(|j| j.at("data/result").map(|r| r.items().to_vec()))
        .unwrap_or_default()
}

fn sample<'a>(result: &'a [Json], container: &str) -> &'a Json {
    result
        .iter()
        .find(|s| s.at("metric/container").and_then(Json::as_str) == Some(container))
        .or_else(|| {
            result
                .iter()
                .find(|s| s.at("metric/ctrname").and_then(Json::as_str) == Some(container))
        })
        .unwrap_or_else(|| panic!("no sample for {container} in {result:?}"))
}

fn value(s: &Json) -> f64 {
    s.at("value/1")
        .and_then(Json::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {s:?}"))
}

#[test]
fn exporter_is_scraped_by_prometheus_under_hamis_names_and_labels() {
    testkit::require_sim();
    if !require_tool("exporter_is_scraped_by_prometheus", "prometheus") {
        return;
    }
    let node = Node::start();
    let pods = node.sim.dir().join("pods");
    std::fs::create_dir_all(pods.join(format!("ml_trainer-0_{UID_A}"))).unwrap();

    let mut exporter = {
        // On the node's simulated GPU (its NVML for the host series), not preloaded.
        let mut c = node.sim.command(target_profile_dir().join("vgpuctl"));
        c.env("NODE_NAME", "gpu-node-7");
        c.args([
            "exporter",
            "--legacy-metrics",
            "--listen",
            "127.0.0.1:0",
            "--hook-path",
        ])
        .arg(&node.hook)
        .arg("--pods-dir")
        .arg(&pods);
        Child::spawn(&mut c, Duration::from_secs(170))
    };
    let line = exporter.wait_for(Duration::from_secs(10), |l| l.contains("serving http://"));
    let exp_addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("address")
        .to_string();
    // A client that connects and sends nothing does not hold up the next scrape.
    let _stuck = TcpStream::connect(&exp_addr).unwrap();
    let t0 = Instant::now();
    let (code, body) = http_get(&exp_addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(
        body.contains("# TYPE hami_vgpu_memory_used_bytes gauge"),
        "{body}"
    );
    assert_eq!(http_get(&exp_addr, "/nope").map(|r| r.0), Some(404));

    let prom_dir = node.sim.dir().join("prometheus");
    std::fs::create_dir_all(prom_dir.join("data")).unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vgpu\n    static_configs:\n      - targets: ['{exp_addr}']\n"
        ),
    )
    .unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = {
        let mut c = Command::new("prometheus");
        c.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .current_dir(&prom_dir);
        Child::spawn(&mut c, Duration::from_secs(170))
    };

    // Until Prometheus has scraped the exporter (and A's and B's series are in).
    let end = Instant::now() + Duration::from_secs(90);
    let used = loop {
        let r = query(&prom_addr, "hami_vgpu_memory_used_bytes");
        if r.len() >= 3 {
            break r;
        }
        assert!(
            Instant::now() < end,
            "Prometheus did not scrape the exporter: up={:?}",
            query(&prom_addr, "up")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let up = query(&prom_addr, "up{job=\"vgpu\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(value(&up[0]), 1.0);

    let uuid = node.uuid();
    let (ctx, module, data, total) = node.truth(&node.a_pids());
    let a = sample(&used, "trainer");
    assert_eq!(value(a), total as f64, "{a:?}");
    // Exactly HAMi's label set, plus the job and instance Prometheus adds.
    let mut keys: Vec<String> = match a.get("metric") {
        Some(Json::Obj(m)) => m.iter().map(|(k, _)| k.clone()).collect(),
        other => panic!("metric labels: {other:?}"),
    };
    keys.sort();
    assert_eq!(
        keys,
        [
            "__name__",
            "container",
            "device_uuid",
            "instance",
            "job",
            "namespace",
            "pod",
            "vdevice_index",
            "zone"
        ],
        "{a:?}"
    );
    let label = |s: &Json, k: &str| {
        s.at(&format!("metric/{k}"))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    assert_eq!(label(a, "namespace").as_deref(), Some("ml"));
    assert_eq!(label(a, "pod").as_deref(), Some("trainer-0"));
    assert_eq!(label(a, "vdevice_index").as_deref(), Some("0"));
    assert_eq!(label(a, "device_uuid"), Some(uuid.clone()));
    assert_eq!(label(a, "zone").as_deref(), Some("vGPU"));
    // B's pod is not in the kubelet's log directory: pod = its UID, no namespace.
    let b = sample(&used, "server");
    assert_eq!(label(b, "pod").as_deref(), Some(UID_B));
    assert_eq!(label(b, "namespace"), None, "empty label: {b:?}");
    assert_eq!(value(b), node.truth(&node.b_pids()).3 as f64);

    let one = |metric: &str, ctr: &str| value(sample(&query(&prom_addr, metric), ctr));
    assert_eq!(
        one("hami_container_device_memory_bytes", "trainer"),
        total as f64
    );
    assert_eq!(one("hami_vgpu_memory_limit_bytes", "trainer"), GIB as f64);
    assert_eq!(
        one("hami_vgpu_memory_limit_bytes", "server"),
        (2 * GIB) as f64
    );
    assert_eq!(one("hami_vgpu_memory_context_bytes", "trainer"), ctx as f64);
    assert_eq!(
        one("hami_vgpu_memory_module_bytes", "trainer"),
        module as f64
    );
    assert_eq!(one("hami_vgpu_memory_buffer_bytes", "trainer"), data as f64);
    let util = one("hami_container_device_utilization_ratio", "trainer");
    assert!((0.0..=100.0).contains(&util), "{util}");
    let last = query(&prom_addr, "hami_container_last_kernel_elapsed_seconds");
    assert_eq!(last.len(), 1, "only A ran a kernel: {last:?}");
    assert!(value(sample(&last, "trainer")) < 120.0);
    // The legacy names, with their own label names.
    let legacy = query(&prom_addr, "vGPU_device_memory_usage_in_bytes");
    let la = sample(&legacy, "trainer");
    assert_eq!(value(la), total as f64);
    assert_eq!(label(la, "podname").as_deref(), Some("trainer-0"));
    assert_eq!(label(la, "podnamespace").as_deref(), Some("ml"));
    assert_eq!(label(la, "vdeviceid").as_deref(), Some("0"));
    assert_eq!(label(la, "deviceuuid"), Some(uuid));
    // The host series, from the (simulated) NVML: the whole card's use, every tenant.
    let host = query(&prom_addr, "hami_host_gpu_memory_used_bytes");
    assert_eq!(host.len(), 1, "one GPU: {host:?}");
    let card_used = node
        .sim
        .status_json()
        .at("devices/0/used_bytes")
        .and_then(Json::as_u64)
        .unwrap();
    assert_eq!(value(&host[0]), card_used as f64, "{host:?}");
    assert_eq!(label(&host[0], "node").as_deref(), Some("gpu-node-7"));
    assert_eq!(label(&host[0], "device_index").as_deref(), Some("0"));
    assert_eq!(
        label(&host[0], "device_type").as_deref(),
        Some("NVIDIA-NVIDIA H100 80GB HBM3")
    );
    let host_util = query(&prom_addr, "hami_host_gpu_utilization_ratio");
    assert!(
        (0.0..=100.0).contains(&value(&host_util[0])),
        "{host_util:?}"
    );
    assert_eq!(
        query(
            &prom_addr,
            "hami_host_gpu_memory_controller_utilization_ratio"
        )
        .len(),
        1
    );
    let legacy_host = query(&prom_addr, "HostGPUMemoryUsage");
    assert_eq!(
        label(&legacy_host[0], "nodeid").as_deref(),
        Some("gpu-node-7")
    );
    let desc = sample(
        &query(&prom_addr, "Device_memory_desc_of_container"),
        "trainer",
    )
    .clone();
    assert_eq!(label(&desc, "data"), Some(data.to_string()));
    assert_eq!(label(&desc, "context"), Some(ctx.to_string()));
    assert_eq!(
        one("vGPU_device_memory_limit_in_bytes", "server"),
        (2 * GIB) as f64
    );
    exporter.kill9();
}

// ---- install ----------------------------------------------------------------------------

fn sha(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

fn node_glibc() -> String {
    let out = run_default(Command::new("getconf").arg("GNU_LIBC_VERSION"));
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("glibc version")
        .to_string()
}

#[test]
fn install_round_trips_on_a_scratch_hook_path_without_touching_mapped_files() {
    testkit::require_sim();
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let hook = sim.dir().join("hook");
    let vgpu = hook.join("vgpu");
    std::fs::create_dir_all(&vgpu).unwrap();
    // What HAMi's postStart hook left: its library under the version name and the plain
    // name, and the preload file. The "old" library is a real one, in use by a container.
    let old = vgpu.join("libvgpu.so.v2.6.0");
    std::fs::copy(libvgpu(), &old).unwrap();
    std::fs::write(vgpu.join("libvgpu.so"), b"hami-core plain name\n").unwrap();
    let preload_before = b"/usr/local/vgpu/libvgpu.so\n".to_vec();
    std::fs::write(vgpu.join("ld.so.preload"), &preload_before).unwrap();
    let before_old = sha(&old);
    let before_plain = sha(&vgpu.join("libvgpu.so"));
    let old_inode = inode(&old);

    // A running container process with the old library preloaded from that path.
    let mut running = {
        let mut c = sim.command(client(Style::Dlopen));
        c.env("LD_PRELOAD", &old)
            .env("CUDA_DEVICE_MEMORY_SHARED_CACHE", sim.dir().join("r.cache"))
            .args(["alloc-hold", &(10 * MIB).to_string(), "60"]);
        Child::spawn(&mut c, Duration::from_secs(90))
    };
    running.wait_for_kv("ready", "1", Duration::from_secs(30));
    let held = std::fs::File::open(&old).unwrap();

    // The new library: another real build (a copy with a trailing marker, a different file).
    let new_lib = sim.dir().join("new-libvgpu.so");
    let mut bytes = sha(&libvgpu());
    bytes.extend_from_slice(b"\0vgpu-new");
    std::fs::write(&new_lib, &bytes).unwrap();

    // The plain debug build needs a newer glibc than the 2.17 floor: refused, nothing changed.
    let out = run_default(
        vgpuctl()
            .args(["install", "--hook-path"])
            .arg(&hook)
            .arg("--library")
            .arg(&new_lib),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("above the floor 2.17"),
        "{}",
        out.stderr
    );
    assert_eq!(sha(&old), before_old);
    assert!(!vgpu.join(".vgpuctl-backup/manifest").exists());

    let floor = node_glibc();
    let install = |extra: &[&str]| {
        let out = run_default(
            vgpuctl()
                .args(["install", "--hook-path"])
                .arg(&hook)
                .arg("--library")
                .arg(&new_lib)
                .args(["--glibc-floor", &floor])
                .args(extra),
        );
        out.assert_success("vgpuctl install");
        out
    };
    let out = install(&["--hami-version", "v2.7.0"]);
    assert!(
        out.stdout.contains(&format!("node has {floor}")),
        "{}",
        out.stdout
    );
    for name in ["libvgpu.so", "libvgpu.so.v2.6.0", "libvgpu.so.v2.7.0"] {
        assert_eq!(sha(&vgpu.join(name)), bytes, "{name} is the new library");
    }
    assert_eq!(
        std::fs::read_to_string(vgpu.join("ld.so.preload")).unwrap(),
        format!("{}/libvgpu.so\n", vgpu.display())
    );
    // Replaced by rename: a new inode under the name; the old inode untouched (the open
    // file still reads the old bytes, so nothing was truncated or rewritten in place).
    assert_ne!(inode(&old), old_inode);
    let mut seen = Vec::new();
    held.read_at_end(&mut seen);
    assert_eq!(seen, before_old, "the mapped library was never rewritten");
    // The running process is unharmed and finishes normally.
    running.close_stdin();
    let out = running.finish();
    out.assert_success("process running on the old library");
    assert!(out.stdout.contains("freed=1"), "{}", out.describe());

    // A second install (an upgrade) keeps the first backup: the originals are HAMi's.
    install(&[]);
    let out = run_default(
        vgpuctl()
            .args(["install", "--uninstall", "--hook-path"])
            .arg(&hook),
    );
    out.assert_success("vgpuctl install --uninstall");
    assert_eq!(sha(&old), before_old, "HAMi's versioned library restored");
    assert_eq!(inode(&old), old_inode, "the very same file");
    assert_eq!(sha(&vgpu.join("libvgpu.so")), before_plain);
    assert_eq!(sha(&vgpu.join("ld.so.preload")), preload_before);
    assert!(
        !vgpu.join("libvgpu.so.v2.7.0").exists(),
        "what we created is gone"
    );
    assert!(!vgpu.join(".vgpuctl-backup").exists());
    let names: Vec<String> = std::fs::read_dir(&vgpu)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
    // Nothing left to undo.
    let out = run_default(
        vgpuctl()
            .args(["install", "--uninstall", "--hook-path"])
            .arg(&hook),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
}

#[test]
fn install_onto_an_empty_hook_path_and_back_leaves_nothing() {
    let sim = SimEnv::new();
    let hook = sim.dir().join("fresh");
    let out = run_default(
        vgpuctl()
            .args(["install", "--hook-path"])
            .arg(&hook)
            .arg("--library")
            .arg(libvgpu())
            .args(["--glibc-floor", &node_glibc()]),
    );
    out.assert_success("install on an empty hook path");
    assert_eq!(sha(&hook.join("vgpu/libvgpu.so")), sha(&libvgpu()));
    let out = run_default(
        vgpuctl()
            .args(["install", "--uninstall", "--hook-path"])
            .arg(&hook),
    );
    out.assert_success("uninstall");
    let left: Vec<_> = std::fs::read_dir(hook.join("vgpu")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_shipped_library_meets_the_default_floor() {
    let lib = target_profile_dir()
        .parent()
        .unwrap()
        .join("release-glibc2.17/libvgpu.so");
    if !lib.exists() {
        let msg = format!("{} missing: run scripts/build-release.sh", lib.display());
        if testkit::in_ci() {
            panic!("{msg} (required under CI)");
        }
        eprintln!("SKIP {msg}");
        return;
    }
    let sim = SimEnv::new();
    let hook = sim.dir().join("hook");
    let out = run_default(
        vgpuctl()
            .args(["install", "--hook-path"])
            .arg(&hook)
            .arg("--library")
            .arg(&lib),
    );
    out.assert_success("install of the shipped build at the default floor");
    assert!(
        out.stdout.contains("library needs 2.17, floor 2.17"),
        "{}",
        out.stdout
    );
}

trait ReadAll {
    fn read_at_end(&self, out: &mut Vec<u8>);
}

impl ReadAll for std::fs::File {
    fn read_at_end(&self, out: &mut Vec<u8>) {
        let mut off = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.read_at(&mut buf, off).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            off += n as u64;
        }
    }
}
