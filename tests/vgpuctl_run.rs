//! `vgpuctl run` as a launcher: signals reach the command, the private region (or container
//! directory) is removed on every exit path and a stale one is cleaned up next time, bad
//! options are refused by vgpuctl itself; and the simulated GPU refuses processes of a pid
//! namespace whose host pids it cannot learn.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use testkit::{run_default, target_profile_dir, Child};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// A command that makes the region (a CUDA client runs first), reports, and waits for a
/// signal: on SIGTERM it writes a marker and exits 3.
fn waiting_script(d: &Path) -> String {
    format!(
        "{c} alloc-hold 1048576 0 > /dev/null || exit 9; \
         trap 'echo term > {d}/got_term; exit 3' TERM; \
         echo \"region=$CUDA_DEVICE_MEMORY_SHARED_CACHE\"; echo \"pid=$$\"; \
         while :; do sleep 0.02; done",
        c = client(Style::Dlopen).display(),
        d = d.display()
    )
}

fn sigterm_is_forwarded_and_everything_removed(container: bool) {
    let sim = machine();
    let mut c = vgpuctl_cmd(&sim);
    c.arg("run");
    if container {
        c.arg("--container");
    }
    c.args(["--sim", "--gpumem", "1g", "--", "sh", "-c"])
        .arg(waiting_script(sim.dir()));
    let mut run = Child::spawn(&mut c, Duration::from_secs(60));
    run.wait_for(Duration::from_secs(30), |l| l.starts_with("pid="));
    let kv = run.kv();
    let region = kv.str("region").to_string();
    if !container {
        assert!(Path::new(&region).exists(), "{region} made by the client");
    }
    assert_eq!(
        run_entries(sim.dir()).len(),
        1,
        "one private region or directory"
    );
    // SAFETY: SIGTERM to the vgpuctl this test started.
    unsafe { libc::kill(run.pid() as i32, libc::SIGTERM) };
    let out = run.finish();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's status: {}",
        out.describe()
    );
    assert_eq!(
        std::fs::read_to_string(sim.dir().join("got_term")).unwrap_or_default(),
        "term\n",
        "the command got SIGTERM"
    );
    assert_eq!(run_entries(sim.dir()), Vec::<String>::new(), "all removed");
}

#[test]
fn sigterm_reaches_the_command_and_the_private_region_is_removed() {
    testkit::require_sim();
    sigterm_is_forwarded_and_everything_removed(false);
}

#[test]
fn sigterm_reaches_a_containers_command_and_its_directory_is_removed() {
    testkit::require_sim();
    if !is_root() && !testkit::in_ci() {
        eprintln!("SKIP: containers as root only in this test");
        return;
    }
    sigterm_is_forwarded_and_everything_removed(true);
}

#[test]
fn a_killed_vgpuctl_takes_its_command_along_and_the_next_run_removes_what_it_left() {
    testkit::require_sim();
    let sim = machine();
    let mut c = vgpuctl_cmd(&sim);
    c.args(["run", "--sim", "--gpumem", "1g", "--", "sh", "-c"])
        .arg(waiting_script(sim.dir()));
    let mut run = Child::spawn(&mut c, Duration::from_secs(60));
    run.wait_for(Duration::from_secs(30), |l| l.starts_with("pid="));
    let kv = run.kv();
    let (region, child) = (kv.str("region").to_string(), kv.u64("pid") as u32);
    run.kill9();
    wait_until(
        "the command to die with vgpuctl",
        Duration::from_secs(5),
        || !running(child),
    );
    assert!(
        Path::new(&region).exists(),
        "left behind by the killed vgpuctl"
    );
    let out = run_default(vgpuctl_cmd(&sim).args(["run", "--sim", "--", "true"]));
    out.assert_success("the next run");
    assert!(!Path::new(&region).exists(), "stale region removed");
    assert!(
        out.stderr.contains("removed") && out.stderr.contains(&region),
        "says so: {}",
        out.stderr
    );
    assert_eq!(run_entries(sim.dir()), Vec::<String>::new());
}

#[test]
fn a_device_the_machine_lacks_is_refused_by_vgpuctl() {
    testkit::require_sim();
    let sim = machine();
    let marker = sim.dir().join("ran");
    let out = run_default(
        vgpuctl_cmd(&sim)
            .args(["run", "--sim", "--device", "5", "--", "touch"])
            .arg(&marker),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("--device \"5\"") && out.stderr.contains("1 GPU"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(!marker.exists(), "the command never ran");
    let two = machine().var("VGPU_SIM_DEVICES", "2");
    let out = run_default(
        vgpuctl_cmd(&two)
            .args(["run", "--sim", "--device", "1", "--", "sh", "-c"])
            .arg("echo cvd=$CUDA_VISIBLE_DEVICES"),
    );
    out.assert_success("--device 1 of 2");
    assert_eq!(out.kv().str("cvd"), "1");
}

#[test]
fn help_and_version() {
    let sim = machine();
    let out = run_default(vgpuctl_cmd(&sim).args(["run", "--help"]));
    out.assert_success("run --help");
    assert!(out.stdout.contains("--container") && out.stdout.contains("--gpumem"));
    let out = run_default(vgpuctl_cmd(&sim).arg("--version"));
    out.assert_success("--version");
    assert_eq!(
        out.stdout.trim(),
        format!("vgpuctl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_pid_namespace_without_host_pids_is_refused_not_merged() {
    testkit::require_sim();
    if !is_root() && !testkit::in_ci() {
        eprintln!("SKIP: unshare --pid needs root");
        return;
    }
    let sim = machine();
    // The machine's namespace uses the GPU first (it records the machine's namespace).
    let mut c = command(&sim, Style::Dlopen, false);
    c.args(["alloc-hold", "1048576", "0"]);
    run_default(&mut c).assert_success("a machine process");
    let mut c = sim.command("unshare");
    c.args(["--pid", "--fork", "--mount-proc"])
        .arg(client(Style::Dlopen))
        .args(["alloc-hold", "1048576", "0"]);
    let out = run_default(&mut c);
    assert!(!out.status.success(), "{}", out.describe());
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("vgpu-sim:"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {}", out.stderr);
    assert!(
        lines[0].contains("vgpuctl run --container") && lines[0].contains("/proc"),
        "says how to make host pids known: {}",
        lines[0]
    );
    assert!(
        out.stdout.contains("error=API(cuInit)(0) code=100 "),
        "cuInit: CUDA_ERROR_NO_DEVICE: {}",
        out.describe()
    );
    // An NVML client there (pynvml) sees no devices, with the same one line.
    if let Some(py) = testkit::require_venv("pynvml in a plain pid namespace") {
        let mut c = sim.command("unshare");
        c.args(["--pid", "--fork", "--mount-proc"]).arg(py).args([
            "-c",
            "import pynvml; pynvml.nvmlInit(); print('count=%d' % pynvml.nvmlDeviceGetCount())",
        ]);
        let out = run_default(&mut c);
        out.assert_success("pynvml");
        assert_eq!(out.kv().u64("count"), 0, "{}", out.describe());
        let refused = out
            .stderr
            .lines()
            .filter(|l| l.contains("is refused"))
            .count();
        assert_eq!(refused, 1, "{}", out.stderr);
    }
    let st = sim.status_json();
    assert_eq!(
        st.get("processes").unwrap().items().len(),
        0,
        "nothing merged"
    );
}

#[test]
fn ctrl_c_at_a_terminal_reaches_the_command_once() {
    // The terminal sends SIGINT to the whole foreground group, vgpuctl and the command: vgpuctl
    // must not forward it a second time. Driven through a pseudo-terminal (python3's pty).
    testkit::require_sim();
    let sim = machine();
    let driver = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
buf, sent, t0 = b"", False, time.time()
while time.time() - t0 < 20:
    if select.select([fd], [], [], 0.05)[0]:
        try:
            d = os.read(fd, 4096)
        except OSError:
            break
        if not d:
            break
        buf += d
    if b"ready" in buf and not sent:
        os.write(fd, b"\x03")
        sent = True
os.waitpid(pid, 0)
print("got_int=%d" % buf.count(b"GOT_INT"))
print("done=%d" % buf.count(b"done"))
"#;
    for container in [false, true] {
        if container && !is_root() && !testkit::in_ci() {
            continue;
        }
        let mut py = sim.command("python3");
        py.env("TMPDIR", sim.dir())
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("CUDA_DEVICE_MEMORY_SHARED_CACHE")
            .args(["-c", driver])
            .arg(target_profile_dir().join("vgpuctl"))
            .arg("run");
        if container {
            py.arg("--container");
        }
        py.args(["--sim", "--", "sh", "-c"])
            .arg("trap 'echo GOT_INT' INT; echo ready; sleep 0.5; sleep 0.5; echo done");
        let out = run_default(&mut py);
        out.assert_success("the pty driver");
        assert_eq!(
            out.kv().u64("got_int"),
            1,
            "container={container}: {}",
            out.describe()
        );
        assert_eq!(out.kv().u64("done"), 1, "{}", out.describe());
    }
}
