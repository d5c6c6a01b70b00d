//! NVIDIA's own nvidia-smi (Debian's 535 build, unpacked by scripts/setup-nvidia-tools.sh)
//! and the other NVML clients (nvtop, gpustat, nvitop), run for real over the simulated NVML,
//! their output parsed:
//! - over the bare simulator they show the card (the simulator's ground truth);
//! - under libvgpu they show the slice: total = the slice, used = the container's usage
//!   (what cuMemGetInfo and the region say), free = total - used, and only the container's
//!   processes, with the same pids and figures pynvml shows in the same container.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::{run, Child, NvidiaTools, Output, SimEnv};

const READY: Duration = Duration::from_secs(60);
const SLICE_MIB: u64 = 3000;

/// Runs nvidia-smi with `args` on the machine; the simulator reports the driver version this
/// nvidia-smi belongs to. `container`: the environment of a process inside the slice.
fn nvidia_smi(sim: &SimEnv, tools: &NvidiaTools, container: bool, args: &[&str]) -> Output {
    let mut c = sim.command(&tools.nvidia_smi);
    c.args(args);
    if container {
        in_slice(&mut c);
    }
    let out = run(&mut c, Duration::from_secs(60));
    out.assert_success(&format!("nvidia-smi {args:?}"));
    out
}

thread_local! {
    /// How `in_slice` injects the library (the test sets it; one test per thread).
    static HOW: std::cell::Cell<Injection> = const { std::cell::Cell::new(Injection::Preload) };
}

/// The environment HAMi's device plugin gives a container with a 3000 MiB slice, library
/// injected (`HOW`: preloaded unless the test says otherwise; the region file comes from
/// `machine()`).
fn in_slice(c: &mut Command) -> &mut Command {
    let dir = testkit::target_profile_dir().join("vgpu-audit-lib");
    std::fs::create_dir_all(&dir).expect("audit lib dir");
    HOW.get()
        .apply(c, &libvgpu(), &dir)
        .env("CUDA_DEVICE_MEMORY_LIMIT", format!("{SLICE_MIB}m"))
}

/// A process holding `bytes` of device memory until dropped; `container`: inside the slice.
fn holder(sim: &SimEnv, container: bool, bytes: u64) -> Child {
    let mut c = command(sim, Style::Linked, false);
    if container {
        in_slice(&mut c);
    }
    c.args(["alloc-hold", &bytes.to_string(), "120"]);
    let mut child = Child::spawn(&mut c, Duration::from_secs(180));
    child.wait_for_kv("ready", "1", READY);
    child
}

/// The machine's simulated GPU with the nvidia-smi's driver version.
fn card(tools: &NvidiaTools) -> SimEnv {
    machine().var("VGPU_SIM_DRIVER_VERSION", &tools.driver_version)
}

/// Ground truth: (device total, device used, [(pid, used)]) from `vgpu-sim status --json`.
fn ground_truth(sim: &SimEnv) -> (u64, u64, Vec<(u32, u64)>) {
    let s = sim.status_json();
    let dev = &s.get("devices").expect("devices").items()[0];
    let n = |j: &testkit::Json, k: &str| j.get(k).and_then(|v| v.as_u64()).expect(k);
    let procs = s
        .get("processes")
        .expect("processes")
        .items()
        .iter()
        .map(|p| {
            let used = n(
                &p.get("devices").expect("devices").items()[0],
                "total_bytes",
            );
            (n(p, "pid") as u32, used)
        })
        .collect();
    (n(dev, "total_bytes"), n(dev, "used_bytes"), procs)
}

fn mib(bytes: u64) -> u64 {
    assert_eq!(
        bytes % MIB,
        0,
        "{bytes} is not whole MiB: the figures below would round"
    );
    bytes / MIB
}

/// `--format=csv` output: the rows after the header, split at ", ".
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(", ").map(str::to_string).collect())
        .collect()
}

/// The default table's "<used>MiB / <total>MiB" of GPU 0.
fn table_memory(text: &str) -> (u64, u64) {
    for l in text.lines() {
        if let Some(at) = l.find("MiB /") {
            let used = l[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap();
            let rest = l[at + 5..].trim_start();
            let total = rest.split("MiB").next().unwrap().trim();
            return (used.parse().unwrap(), total.parse().unwrap());
        }
    }
    panic!("no memory cell in the table:\n{text}")
}

/// The default table's process rows: (pid, name, used MiB).
fn table_processes(text: &str) -> Vec<(u32, String, u64)> {
    let start = text.find("|  GPU   GI   CI").expect("process box");
    text[start..]
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_matches('|').split_whitespace().collect();
            // GPU GI CI PID Type Name... <n>MiB
            if f.len() < 7 || f[0].parse::<u32>().is_err() {
                return None;
            }
            let used = f[f.len() - 1].strip_suffix("MiB")?.parse().ok()?;
            Some((f[3].parse().ok()?, f[5..f.len() - 1].join(" "), used))
        })
        .collect()
}

/// `-q`: the value after "<key> : " in the section starting at the line `section`.
fn q_value<'a>(text: &'a str, section: &str, key: &str) -> &'a str {
    let start = text
        .lines()
        .position(|l| l.trim() == section)
        .unwrap_or_else(|| panic!("no section {section}:\n{text}"));
    text.lines()
        .skip(start + 1)
        .find_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            (k.trim() == key).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {key} in {section}:\n{text}"))
}

/// `-q`: (pid, used MiB) of the Processes section.
fn q_processes(text: &str) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut pid = None;
    for l in text.lines() {
        let Some((k, v)) = l.split_once(" : ") else {
            continue;
        };
        match k.trim() {
            "Process ID" => pid = v.trim().parse().ok(),
            "Used GPU Memory" => {
                if let (Some(p), Some(m)) = (pid.take(), v.trim().strip_suffix(" MiB")) {
                    out.push((p, m.parse().unwrap()));
                }
            }
            _ => {}
        }
    }
    out
}

fn mib_field(v: &str) -> u64 {
    v.strip_suffix(" MiB")
        .unwrap_or_else(|| panic!("{v:?} is not N MiB"))
        .parse()
        .unwrap()
}

#[test]
fn nvidia_smi_over_the_bare_simulator_shows_the_card() {
    let Some(tools) = testkit::require_nvidia_tools("nvidia_smi_over_the_bare_simulator") else {
        return;
    };
    testkit::require_sim();
    let sim = card(&tools);
    let held = holder(&sim, false, GIB);
    let (total, used, procs) = ground_truth(&sim);
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert_eq!(procs[0].0, held.pid());
    let s = sim.status_json();
    let dev = &s.get("devices").unwrap().items()[0];
    let name = dev.get("name").unwrap().as_str().unwrap().to_string();
    let uuid = dev.get("uuid").unwrap().as_str().unwrap().to_string();

    let l = nvidia_smi(&sim, &tools, false, &["-L"]);
    assert_eq!(l.stdout.trim(), format!("GPU 0: {name} (UUID: {uuid})"));

    let q = nvidia_smi(
        &sim,
        &tools,
        false,
        &[
            "--query-gpu=name,uuid,memory.total,memory.used,memory.free,utilization.gpu",
            "--format=csv",
        ],
    );
    assert_eq!(
        csv_rows(&q.stdout),
        vec![vec![
            name.clone(),
            uuid.clone(),
            format!("{} MiB", mib(total)),
            format!("{} MiB", mib(used)),
            format!("{} MiB", mib(total - used)),
            "0 %".to_string(),
        ]],
        "{}",
        q.stdout
    );

    let apps = nvidia_smi(
        &sim,
        &tools,
        false,
        &["--query-compute-apps=pid,used_memory", "--format=csv"],
    );
    assert_eq!(
        csv_rows(&apps.stdout),
        vec![vec![
            procs[0].0.to_string(),
            format!("{} MiB", mib(procs[0].1))
        ]],
        "{}",
        apps.stdout
    );

    let table = nvidia_smi(&sim, &tools, false, &[]);
    assert!(
        table
            .stdout
            .contains(&format!("Driver Version: {}", tools.driver_version)),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains(&name), "{}", table.stdout);
    assert_eq!(table_memory(&table.stdout), (mib(used), mib(total)));
    let rows = table_processes(&table.stdout);
    assert_eq!(rows.len(), 1, "{}", table.stdout);
    assert_eq!((rows[0].0, rows[0].2), (procs[0].0, mib(procs[0].1)));
    assert!(rows[0].1.contains("cap_linked"), "{:?}", rows[0]);

    let full = nvidia_smi(&sim, &tools, false, &["-q"]);
    let t = &full.stdout;
    assert_eq!(
        q_value(t, "==============NVSMI LOG==============", "Driver Version"),
        tools.driver_version
    );
    assert_eq!(
        q_value(
            t,
            &format!("GPU {}", dev.get("pci_bus_id").unwrap().as_str().unwrap()),
            "Product Name"
        ),
        name
    );
    assert_eq!(
        q_value(t, "FB Memory Usage", "Total"),
        format!("{} MiB", mib(total))
    );
    assert_eq!(mib_field(q_value(t, "FB Memory Usage", "Used")), mib(used));
    assert_eq!(
        mib_field(q_value(t, "FB Memory Usage", "Free")),
        mib(total - used)
    );
    assert_eq!(q_processes(t), vec![(procs[0].0, mib(procs[0].1))]);
    drop(held);
}

#[test]
fn simulated_driver_version_is_configurable_and_bad_values_fall_back() {
    let Some(tools) = testkit::require_nvidia_tools("simulated_driver_version") else {
        return;
    };
    testkit::require_sim();
    let args = ["--query-gpu=driver_version", "--format=csv,noheader"];
    let sim = card(&tools);
    assert_eq!(
        nvidia_smi(&sim, &tools, false, &args).stdout.trim(),
        tools.driver_version
    );
    let sim = machine().var("VGPU_SIM_DRIVER_VERSION", "535.x");
    let out = nvidia_smi(&sim, &tools, false, &args);
    assert_eq!(out.stdout.trim(), "570.124.06", "the default");
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("VGPU_SIM_DRIVER_VERSION"))
        .collect();
    assert_eq!(complaints.len(), 1, "one clear line: {}", out.stderr);
}

/// The container's usage as the region says (vgpuctl inspect), bytes.
fn region_used(sim: &SimEnv) -> u64 {
    let j = inspect(sim);
    let dev = &j.get("devices").expect("devices").items()[0];
    dev.get("used_bytes")
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no used_bytes in {dev:?}"))
}

#[test]
fn nvidia_smi_under_libvgpu_shows_the_slice_and_the_containers_processes() {
    nvidia_smi_shows_the_slice(Injection::Preload);
}

/// NVIDIA's nvidia-smi and pynvml with libvgpu as an `LD_AUDIT` library: the same views.
#[test]
fn nvidia_smi_under_libvgpu_shows_the_slice_and_the_containers_processes_under_ld_audit() {
    nvidia_smi_shows_the_slice(Injection::Audit);
}

fn nvidia_smi_shows_the_slice(how: Injection) {
    HOW.set(how);
    let Some(tools) = testkit::require_nvidia_tools("nvidia_smi_under_libvgpu") else {
        return;
    };
    testkit::require_sim();
    let sim = card(&tools);
    // Another tenant of the GPU, outside the container: never shown to it.
    let outsider = holder(&sim, false, 512 * MIB);
    let inside = holder(&sim, true, GIB);
    let (_, _, procs) = ground_truth(&sim);
    let inside_used = procs
        .iter()
        .find(|p| p.0 == inside.pid())
        .expect("inside holder on the GPU")
        .1;
    // cuMemGetInfo inside the container, right after the allocation, and the region agree.
    let free_inside: u64 = inside.kv().u64("free");
    let used_by_cumemgetinfo = SLICE_MIB * MIB - free_inside;
    assert_eq!(used_by_cumemgetinfo, region_used(&sim));
    assert_eq!(used_by_cumemgetinfo, inside_used);
    let used = mib(inside_used);

    let q = nvidia_smi(
        &sim,
        &tools,
        true,
        &[
            "--query-gpu=name,uuid,memory.total,memory.used,memory.free,utilization.gpu",
            "--format=csv",
        ],
    );
    let row = &csv_rows(&q.stdout)[0];
    assert_eq!(
        row[2..],
        [
            format!("{SLICE_MIB} MiB"),
            format!("{used} MiB"),
            format!("{} MiB", SLICE_MIB - used),
            "0 %".to_string()
        ],
        "{}",
        q.stdout
    );
    assert_eq!(row[0], "NVIDIA H100 80GB HBM3", "the real device's name");

    let apps = nvidia_smi(
        &sim,
        &tools,
        true,
        &["--query-compute-apps=pid,used_memory", "--format=csv"],
    );
    assert_eq!(
        csv_rows(&apps.stdout),
        vec![vec![inside.pid().to_string(), format!("{used} MiB")]],
        "only the container's process: {}",
        apps.stdout
    );

    let table = nvidia_smi(&sim, &tools, true, &[]);
    assert_eq!(table_memory(&table.stdout), (used, SLICE_MIB));
    let rows: Vec<(u32, u64)> = table_processes(&table.stdout)
        .into_iter()
        .map(|r| (r.0, r.2))
        .collect();
    assert_eq!(rows, vec![(inside.pid(), used)], "{}", table.stdout);

    let full = nvidia_smi(&sim, &tools, true, &["-q"]);
    let t = &full.stdout;
    assert_eq!(
        q_value(t, "FB Memory Usage", "Total"),
        format!("{SLICE_MIB} MiB")
    );
    assert_eq!(mib_field(q_value(t, "FB Memory Usage", "Used")), used);
    assert_eq!(
        mib_field(q_value(t, "FB Memory Usage", "Free")),
        SLICE_MIB - used
    );
    assert_eq!(q_processes(t), vec![(inside.pid(), used)]);

    // The same container's pynvml lists the same processes with the same figures.
    if let Some(py) = testkit::require_venv("nvidia_smi_under_libvgpu") {
        let script = "import pynvml as n\n\
                      n.nvmlInit()\n\
                      h = n.nvmlDeviceGetHandleByIndex(0)\n\
                      m = n.nvmlDeviceGetMemoryInfo(h)\n\
                      print('mem', m.total >> 20, m.used >> 20)\n\
                      for p in n.nvmlDeviceGetComputeRunningProcesses(h):\n\
                      \x20   print('proc', p.pid, p.usedGpuMemory >> 20)\n";
        let mut c = sim.command(py);
        in_slice(c.args(["-c", script]));
        let out = run(&mut c, Duration::from_secs(60));
        out.assert_success("pynvml in the container");
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            vec![
                format!("mem {SLICE_MIB} {used}"),
                format!("proc {} {used}", inside.pid())
            ],
            "{}",
            out.describe()
        );
    }
    drop(outsider);
}

/// gpustat, nvitop and nvtop in the container show the slice.
#[test]
fn other_nvml_clients_under_libvgpu_show_the_slice() {
    let Some(tools) = testkit::require_nvidia_tools("other_nvml_clients") else {
        return;
    };
    testkit::require_sim();
    let sim = card(&tools);
    let _outsider = holder(&sim, false, 512 * MIB);
    let inside = holder(&sim, true, GIB);
    let (_, _, procs) = ground_truth(&sim);
    let used = mib(procs.iter().find(|p| p.0 == inside.pid()).unwrap().1);

    if let Some(py) = testkit::require_venv("other_nvml_clients (gpustat, nvitop)") {
        let bin = py.parent().unwrap().to_path_buf();
        let mut c = sim.command(bin.join("gpustat"));
        in_slice(c.arg("--json"));
        let out = run(&mut c, Duration::from_secs(60));
        out.assert_success("gpustat --json");
        let j = testkit::Json::parse(&out.stdout).expect("gpustat JSON");
        let gpu = &j.get("gpus").unwrap().items()[0];
        let n = |k: &str| gpu.get(k).and_then(|v| v.as_u64()).expect(k);
        assert_eq!(n("memory.total"), SLICE_MIB, "{}", out.stdout);
        assert_eq!(n("memory.used"), used, "{}", out.stdout);
        let pids: Vec<u64> = gpu
            .get("processes")
            .unwrap()
            .items()
            .iter()
            .map(|p| p.get("pid").unwrap().as_u64().unwrap())
            .collect();
        assert_eq!(pids, vec![inside.pid() as u64], "{}", out.stdout);

        let mut c = sim.command(bin.join("nvitop"));
        in_slice(c.args(["-1", "--colorful"]).env("COLUMNS", "120"));
        c.env_remove("NO_COLOR");
        let out = run(&mut c, Duration::from_secs(60));
        out.assert_success("nvitop -1");
        let plain = strip_ansi(&out.stdout);
        assert!(
            plain.contains(&format!("{used}MiB / {SLICE_MIB}MiB")),
            "memory cell: {plain}"
        );
        let lines_with_pid = |pid: u32| {
            plain
                .lines()
                .filter(|l| l.split_whitespace().nth(2) == Some(&pid.to_string()))
                .count()
        };
        assert_eq!(lines_with_pid(inside.pid()), 1, "{plain}");
    }

    if let Some(tmux) = testkit::require_program("other_nvml_clients (nvtop)", "tmux") {
        let screen = nvtop_screen(&sim, &tools, &tmux);
        let want = format!("/{:.3}Gi]", SLICE_MIB as f64 / 1024.0);
        assert!(
            screen.contains(&want),
            "nvtop memory bar ({want}):\n{screen}"
        );
        assert!(
            screen.contains(&format!("{:.3}Gi/", used as f64 / 1024.0)),
            "{screen}"
        );
    }
}

/// Runs nvtop in a detached tmux session on the container's environment and returns the
/// screen once its device line is drawn.
fn nvtop_screen(sim: &SimEnv, tools: &NvidiaTools, tmux: &std::path::Path) -> String {
    let socket = sim.dir().join("tmux.sock");
    let tmux_cmd = |args: &[&str]| {
        let mut c = Command::new(tmux);
        c.arg("-S").arg(&socket).args(args);
        c
    };
    let mut env: Vec<String> = sim
        .envs()
        .into_iter()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    env.push(format!("LD_PRELOAD={}", libvgpu().display()));
    env.push(format!("CUDA_DEVICE_MEMORY_LIMIT={SLICE_MIB}m"));
    env.push("TERM=xterm-256color".into());
    let mut start = tmux_cmd(&["new-session", "-d", "-x", "160", "-y", "40", "env"]);
    start.args(&env).arg(&tools.nvtop);
    run(&mut start, Duration::from_secs(30)).assert_success("tmux new-session nvtop");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let out = run(
            &mut tmux_cmd(&["capture-pane", "-p"]),
            Duration::from_secs(10),
        );
        if out.stdout.contains("MEM[") || std::time::Instant::now() > deadline {
            break out.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = run(&mut tmux_cmd(&["kill-server"]), Duration::from_secs(10));
    screen
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A driver branch whose private-table layout libvgpu does not know: the table passes
/// through untouched (nvidia-smi works and lists the whole GPU's processes), and libvgpu
/// says so once; the public NVML view is still the container's.
#[test]
fn an_unknown_driver_branchs_private_table_passes_through_untouched() {
    let Some(tools) = testkit::require_nvidia_tools("unknown_driver_branch") else {
        return;
    };
    testkit::require_sim();
    let sim = machine().var("VGPU_SIM_DRIVER_VERSION", "550.54.15");
    let outsider = holder(&sim, false, 512 * MIB);
    let inside = holder(&sim, true, GIB);
    let mut c = sim.command(&tools.nvidia_smi);
    in_slice(c.args(["--query-compute-apps=pid", "--format=csv,noheader"]));
    let out = run(&mut c, Duration::from_secs(60));
    out.assert_success("nvidia-smi --query-compute-apps");
    let mut pids: Vec<u32> = out
        .stdout
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    pids.sort_unstable();
    let mut want = vec![outsider.pid(), inside.pid()];
    want.sort_unstable();
    assert_eq!(pids, want, "the whole GPU's processes: {}", out.describe());
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("passes through unchanged"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", out.stderr);
    assert!(notes[0].contains("550.54.15"), "{}", notes[0]);
    let mut c = sim.command(&tools.nvidia_smi);
    in_slice(c.args(["--query-gpu=memory.total", "--format=csv,noheader"]));
    let out = run(&mut c, Duration::from_secs(60));
    assert_eq!(
        out.stdout.trim(),
        format!("{SLICE_MIB} MiB"),
        "{}",
        out.describe()
    );
}

/// On a two-GPU machine, a container given the second GPU (`CUDA_VISIBLE_DEVICES=1`) sees it
/// as nvidia-smi's GPU 0, as CUDA does (nvidia-smi asks the private table's slot 81 too, but
/// shows the devices the public, mapped, calls give it).
#[test]
fn nvidia_smi_in_a_slice_of_the_second_gpu_shows_it_as_gpu_0() {
    let Some(tools) = testkit::require_nvidia_tools("second_gpu") else {
        return;
    };
    testkit::require_sim();
    let sim = card(&tools).var("VGPU_SIM_DEVICES", "2");
    let bare = nvidia_smi(&sim, &tools, false, &["-L"]);
    assert_eq!(bare.stdout.lines().count(), 2, "{}", bare.stdout);
    let s = sim.status_json();
    let uuids: Vec<String> = s
        .get("devices")
        .unwrap()
        .items()
        .iter()
        .map(|d| d.get("uuid").unwrap().as_str().unwrap().to_string())
        .collect();
    assert_eq!(uuids.len(), 2);
    let mut c = sim.command(&tools.nvidia_smi);
    in_slice(c.args([
        "--query-gpu=index,uuid,memory.total",
        "--format=csv,noheader",
    ]))
    .env("CUDA_VISIBLE_DEVICES", "1");
    let out = run(&mut c, Duration::from_secs(60));
    out.assert_success("nvidia-smi in a slice of GPU 1");
    assert_eq!(
        out.stdout.trim(),
        format!("0, {}, {SLICE_MIB} MiB", uuids[1]),
        "{}",
        out.describe()
    );
}

// ---- in a container (`vgpuctl run --container`: pid + mount namespaces, /etc/ld.so.preload) --

fn vgpuctl(sim: &SimEnv) -> Command {
    let mut c = sim.command(testkit::target_profile_dir().join("vgpuctl"));
    // vgpuctl finds the simulator next to itself; its private files go to the test's dir.
    c.env_remove("LD_LIBRARY_PATH")
        .env_remove("CUDA_DEVICE_MEMORY_SHARED_CACHE")
        .env("TMPDIR", sim.dir());
    c
}

/// Whether containers can be made here (root, or unprivileged user namespaces); under CI
/// they must.
fn containers_possible(sim: &SimEnv) -> bool {
    containers_possible_with(
        vgpuctl(sim).args(["run", "--container", "--sim", "--", "true"]),
        "vgpuctl run --container",
    )
}

/// Opens a FIFO for writing once its reader (a process in the container) has it open.
fn open_writer(p: &std::path::Path, timeout: Duration) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
        {
            Ok(f) => return f,
            Err(e)
                if e.raw_os_error() == Some(libc::ENXIO)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no reader opened {p:?}: {e}"),
        }
    }
}

fn wait_for_file(p: &std::path::Path, timeout: Duration, run: &mut Child) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.contains("done") {
                return s;
            }
        }
        if std::time::Instant::now() > deadline {
            run.kill9();
            panic!(
                "{p:?} not written in {timeout:?}; container said: {:?}",
                run.lines_seen()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A container with a 3000 MiB slice in which one process holds 1 GiB while nvidia-smi's
/// views, pynvml, gpustat, nvitop and nvtop (tmux) run in it; another tenant outside holds
/// 512 MiB. Everything the container shows: the slice, its usage to the MiB (what its
/// holder's cuMemGetInfo and its region say), its one process with the host pid NVML
/// reports and the same figure in every client.
#[test]
fn in_a_container_nvidia_smi_and_the_nvml_clients_show_the_slice() {
    let Some(tools) = testkit::require_nvidia_tools("in_a_container") else {
        return;
    };
    testkit::require_sim();
    let sim = card(&tools);
    if !containers_possible(&sim) {
        return;
    }
    let py = testkit::require_venv("in_a_container");
    let tmux = testkit::require_program("in_a_container (nvtop)", "tmux");
    let outsider = holder(&sim, false, 512 * MIB);

    let d = sim.dir().join("ctr");
    std::fs::create_dir_all(&d).unwrap();
    let fifo = d.join("hold");
    mkfifo(&fifo);
    let smi = tools.nvidia_smi.display().to_string();
    let mut script = format!(
        "set -u; D={d}; SMI={smi}; \
         {client} alloc-hold {GIB} 120 < $D/hold > $D/holder.out 2>&1 & \
         while ! grep -q ready=1 $D/holder.out; do sleep 0.02; done; \
         {vgpuctl} inspect \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" --json > $D/inspect.json; \
         $SMI > $D/table.txt 2>&1; \
         $SMI -q > $D/q.txt 2>&1; \
         $SMI -L > $D/l.txt 2>&1; \
         $SMI --query-gpu=name,uuid,memory.total,memory.used,memory.free,utilization.gpu \
              --format=csv > $D/gpu.csv 2>&1; \
         $SMI --query-compute-apps=pid,used_memory --format=csv > $D/apps.csv 2>&1; ",
        d = d.display(),
        client = client(Style::Linked).display(),
        vgpuctl = testkit::target_profile_dir().join("vgpuctl").display(),
    );
    if let Some(py) = &py {
        let bin = py.parent().unwrap().display().to_string();
        script += &format!(
            "{py} -c 'import pynvml as n\n\
             n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0); m = n.nvmlDeviceGetMemoryInfo(h)\n\
             print(\"mem\", m.total >> 20, m.used >> 20)\n\
             for p in n.nvmlDeviceGetComputeRunningProcesses(h): print(\"proc\", p.pid, p.usedGpuMemory >> 20)' \
               > $D/pynvml.txt 2>&1; \
             {bin}/gpustat --json > $D/gpustat.json 2>$D/gpustat.err; \
             {bin}/nvitop -1 > $D/nvitop.txt 2>&1; ",
            py = py.display()
        );
    }
    if let Some(tmux) = &tmux {
        script += &format!(
            "T=\"{tmux} -S $D/tmux.sock\"; \
             TERM=xterm-256color $T new-session -d -x 160 -y 40 {nvtop}; \
             for i in $(seq 150); do $T capture-pane -p > $D/nvtop.txt; \
               grep -q 'MEM\\[' $D/nvtop.txt && grep -Eq '^ *[0-9]+ .*MiB' $D/nvtop.txt \
                 && break; sleep 0.2; done; \
             $T kill-server; ",
            tmux = tmux.display(),
            nvtop = tools.nvtop.display()
        );
    }
    script += "echo done > $D/done; wait";
    let mut c = vgpuctl(&sim);
    c.args([
        "run",
        "--container",
        "--sim",
        "--gpumem",
        &format!("{SLICE_MIB}m"),
        "--",
        "sh",
        "-c",
    ])
    .arg(&script);
    let mut run_child = Child::spawn(&mut c, Duration::from_secs(240));
    let hold = open_writer(&fifo, Duration::from_secs(60));
    wait_for_file(&d.join("done"), Duration::from_secs(180), &mut run_child);
    let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();

    // Ground truth while the container's holder still holds: the simulator's, by host pid.
    let (_, _, procs) = ground_truth(&sim);
    let inside: Vec<(u32, u64)> = procs
        .iter()
        .copied()
        .filter(|p| p.0 != outsider.pid())
        .collect();
    assert_eq!(
        inside.len(),
        1,
        "one process of the container on the GPU: {procs:?}"
    );
    let (host_pid, inside_bytes) = inside[0];
    let holder_out = testkit::Kv::parse(&read("holder.out"));
    assert_ne!(
        holder_out.u64("pid"),
        host_pid as u64,
        "the container has its own pids"
    );
    let used = mib(inside_bytes);
    assert_eq!(
        SLICE_MIB * MIB - holder_out.u64("free"),
        inside_bytes,
        "cuMemGetInfo inside"
    );
    let region = testkit::Json::parse(&read("inspect.json")).expect("vgpuctl inspect --json");
    let region_used = region.at("devices/0/used_bytes").and_then(|v| v.as_u64());
    assert_eq!(region_used, Some(inside_bytes), "the region: {region:?}");
    drop(hold);
    let end = run_child.finish();
    assert!(end.status.success(), "container: {}", end.describe());

    let gpu = read("gpu.csv");
    assert_eq!(
        csv_rows(&gpu)[0][2..],
        [
            format!("{SLICE_MIB} MiB"),
            format!("{used} MiB"),
            format!("{} MiB", SLICE_MIB - used),
            "0 %".to_string()
        ],
        "{gpu}"
    );
    let apps = read("apps.csv");
    assert_eq!(
        csv_rows(&apps),
        vec![vec![host_pid.to_string(), format!("{used} MiB")]],
        "{apps}"
    );
    let table = read("table.txt");
    assert_eq!(table_memory(&table), (used, SLICE_MIB), "{table}");
    let rows = table_processes(&table);
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!((rows[0].0, rows[0].2), (host_pid, used), "{table}");
    assert!(
        rows[0].1.contains("cap_linked"),
        "the driver's name of it: {table}"
    );
    let q = read("q.txt");
    assert_eq!(
        q_value(&q, "FB Memory Usage", "Total"),
        format!("{SLICE_MIB} MiB")
    );
    assert_eq!(mib_field(q_value(&q, "FB Memory Usage", "Used")), used);
    assert_eq!(
        mib_field(q_value(&q, "FB Memory Usage", "Free")),
        SLICE_MIB - used
    );
    assert_eq!(q_processes(&q), vec![(host_pid, used)], "{q}");
    assert!(read("l.txt").starts_with("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-"));
    // Kept for docs/NVIDIA_SMI.md: VGPU_KEEP_SMI_OUTPUT=<dir> copies what nvidia-smi printed.
    if let Some(keep) = std::env::var_os("VGPU_KEEP_SMI_OUTPUT") {
        for f in [
            "table.txt",
            "q.txt",
            "gpu.csv",
            "apps.csv",
            "l.txt",
            "nvtop.txt",
            "nvitop.txt",
        ] {
            let _ = std::fs::copy(d.join(f), std::path::Path::new(&keep).join(f));
        }
    }

    if py.is_some() {
        let pynvml = read("pynvml.txt");
        assert_eq!(
            pynvml.lines().collect::<Vec<_>>(),
            vec![
                format!("mem {SLICE_MIB} {used}"),
                format!("proc {host_pid} {used}")
            ],
            "pynvml agrees with nvidia-smi: {pynvml}"
        );
        let g = read("gpustat.json");
        let j = testkit::Json::parse(&g).unwrap_or_else(|e| panic!("gpustat JSON ({e}): {g}"));
        let gpu = &j.get("gpus").unwrap().items()[0];
        let n = |k: &str| gpu.get(k).and_then(|v| v.as_u64()).expect(k);
        assert_eq!(
            (n("memory.total"), n("memory.used")),
            (SLICE_MIB, used),
            "{g}"
        );
        // gpustat looks processes up in the container's /proc, where the host pid NVML
        // reports does not exist: it leaves them out (as with a real driver).
        assert!(gpu.get("processes").unwrap().items().is_empty(), "{g}");
        let nvitop = strip_ansi(&read("nvitop.txt"));
        assert!(
            nvitop.contains(&format!("{used}MiB / {SLICE_MIB}MiB")),
            "{nvitop}"
        );
        let row: Vec<&str> = nvitop
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(&host_pid.to_string()))
            .collect();
        assert_eq!(row.len(), 1, "{nvitop}");
        assert!(row[0].contains(&format!("{used}MiB")), "{nvitop}");
    }
    if tmux.is_some() {
        let screen = read("nvtop.txt");
        let want = format!(
            "{:.3}Gi/{:.3}Gi]",
            used as f64 / 1024.0,
            SLICE_MIB as f64 / 1024.0
        );
        assert!(
            screen.contains(&want),
            "nvtop memory bar ({want}):\n{screen}"
        );
        let row: Vec<Vec<&str>> = screen
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.first() == Some(&host_pid.to_string().as_str()))
            .collect();
        assert_eq!(row.len(), 1, "nvtop's one process: {screen}");
        assert!(row[0].contains(&format!("{used}MiB").as_str()), "{screen}");
    }
    drop(outsider);
}
