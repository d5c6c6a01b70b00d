//! Helpers for process-level tests of the simulated GPU (and, later, of libvgpu over it).
//!
//! - Paths: [`workspace_root`], [`target_profile_dir`], [`sim_lib_dir`], [`sim_bin`].
//! - [`SimEnv`]: one isolated simulated machine per test (its own state file, deleted on
//!   drop) and the environment a child process needs to use it.
//! - [`build_c_client`]: compiles `tests/c/<name>.c` once per test run into the target dir.
//! - [`run`] / [`Child`]: child processes with hard time limits, `key=value` output parsing.
//! - [`venv_python`] / [`require_venv`]: the Python venv made by `scripts/setup-venv.sh`.
//! - [`json`]: a small JSON reader for `vgpu-sim status --json`.
//!
//! Tests run in parallel (threads under `cargo test`, processes under nextest); nothing here
//! depends on ordering or shares mutable state between tests except the compiled clients,
//! which are written atomically.

pub mod json;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use json::Json;

/// Default time limit for one child process.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// paths
// ---------------------------------------------------------------------------------------

/// The workspace root (the directory holding `Cargo.toml`, `tests/c`, `scripts`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// `target/<profile>` of the running test: the test executable lives in
/// `target/<profile>/deps/`, whatever `CARGO_TARGET_DIR` says.
pub fn target_profile_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name() == Some(OsStr::new("deps")) {
                if let Some(profile) = deps.parent() {
                    return profile.to_path_buf();
                }
            }
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// `target/<profile>/sim`: the simulated `libcuda.so.1` and `libnvidia-ml.so.1`.
pub fn sim_lib_dir() -> PathBuf {
    target_profile_dir().join("sim")
}

/// A binary built by the workspace (e.g. `vgpu-sim`) in `target/<profile>`.
pub fn sim_bin(name: &str) -> PathBuf {
    target_profile_dir().join(name)
}

/// Panics with a clear message unless the simulator's libraries and `vgpu-sim` are built.
pub fn require_sim() {
    let dir = sim_lib_dir();
    for lib in ["libcuda.so.1", "libnvidia-ml.so.1"] {
        assert!(
            dir.join(lib).exists(),
            "{} is missing: build the workspace first (`cargo build --workspace`, or \
             scripts/test.sh which does it)",
            dir.join(lib).display()
        );
    }
    assert!(
        sim_bin("vgpu-sim").exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        sim_bin("vgpu-sim").display()
    );
}

// ---------------------------------------------------------------------------------------
// SimEnv
// ---------------------------------------------------------------------------------------

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Environment variables that would leak the caller's setup into a test's children.
const SCRUBBED: &[&str] = &[
    "VGPU_SIM_STATE",
    "VGPU_SIM_DEVICES",
    "VGPU_SIM_MODEL",
    "VGPU_SIM_MEMORY",
    "VGPU_SIM_KERNEL_NS",
    "VGPU_SIM_NS_PER_BLOCK",
    "VGPU_SIM_CONTEXT_BYTES",
    "VGPU_SIM_MODULE_BYTES",
    "VGPU_SIM_GROUP",
    "CUDA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "LD_PRELOAD",
    "CUDA_DEVICE_MEMORY_LIMIT",
    "CUDA_DEVICE_SM_LIMIT",
    "CUDA_DEVICE_MEMORY_SHARED_CACHE",
    "CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM",
];

/// One isolated simulated machine: a unique state file in a private temp directory (removed
/// on drop) plus configuration variables. Children started through [`SimEnv::command`] see
/// only this machine.
pub struct SimEnv {
    dir: PathBuf,
    state: PathBuf,
    vars: Vec<(OsString, OsString)>,
    owner: bool,
}

impl SimEnv {
    /// A fresh machine with the simulator's defaults.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("vgpu-test"));
        std::fs::create_dir_all(&dir).expect("create test temp dir");
        let state = dir.join("sim.state");
        SimEnv {
            dir,
            state,
            vars: Vec::new(),
            owner: true,
        }
    }

    /// Another view of the same machine (same state file and variables) whose own variables
    /// can differ, e.g. a process started with `CUDA_VISIBLE_DEVICES`. Only the original
    /// guard removes the state.
    pub fn sibling(&self) -> SimEnv {
        SimEnv {
            dir: self.dir.clone(),
            state: self.state.clone(),
            vars: self.vars.clone(),
            owner: false,
        }
    }

    /// Sets one variable for every child (e.g. `VGPU_SIM_DEVICES`, `CUDA_VISIBLE_DEVICES`).
    pub fn var(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.set(key, value);
        self
    }

    /// Sets (or replaces) one variable for every child.
    pub fn set(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let key = key.as_ref().to_os_string();
        self.vars.retain(|(k, _)| *k != key);
        self.vars.push((key, value.as_ref().to_os_string()));
    }

    /// The state file's path (`VGPU_SIM_STATE`).
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// A private scratch directory, removed with this guard.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The variables to give a child: the state file, `LD_LIBRARY_PATH` with the simulator's
    /// libraries first, and everything set with [`SimEnv::var`].
    pub fn envs(&self) -> Vec<(OsString, OsString)> {
        let mut ld = sim_lib_dir().into_os_string();
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            if !old.is_empty() {
                ld.push(":");
                ld.push(old);
            }
        }
        let mut v = vec![
            (
                OsString::from("VGPU_SIM_STATE"),
                self.state.clone().into_os_string(),
            ),
            (OsString::from("LD_LIBRARY_PATH"), ld),
        ];
        v.extend(self.vars.iter().cloned());
        v
    }

    /// A command for `program` that runs on this machine (caller's leaky variables removed).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        for k in SCRUBBED {
            c.env_remove(k);
        }
        c.envs(self.envs());
        c
    }

    /// `vgpu-sim status --json` for this machine, parsed.
    pub fn status_json(&self) -> Json {
        let mut c = self.command(sim_bin("vgpu-sim"));
        c.args(["status", "--json"]);
        let out = run(&mut c, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "vgpu-sim status --json failed: {}",
            out.describe()
        );
        Json::parse(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vgpu-sim status --json printed invalid JSON ({e}):\n{}",
                out.stdout
            )
        })
    }
}

impl Default for SimEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SimEnv {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// C clients
// ---------------------------------------------------------------------------------------

/// Flags that link a client against the simulated `libcuda.so.1` (`-lcuda` style). The
/// library is found at run time through `LD_LIBRARY_PATH` (no rpath), as with a real driver.
pub fn link_libcuda() -> Vec<String> {
    vec![
        format!("-L{}", sim_lib_dir().display()),
        "-l:libcuda.so.1".to_string(),
    ]
}

/// Flags that build a client against NVIDIA's real `cuda.h` and `nvml.h` from the venv
/// instead of our own header (an ABI cross-check). `None` when the venv lacks them.
pub fn real_header_flags() -> Option<Vec<String>> {
    let cuda = venv_cuda_include()?;
    let nvml = venv_nvml_include()?;
    Some(vec![
        "-DVGPU_REAL_HEADERS".to_string(),
        format!("-I{}", cuda.display()),
        format!("-I{}", nvml.display()),
    ])
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn newest_mtime(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// Compiles `tests/c/<name>.c` with `cc` (once per set of flags and sources: the binary is
/// cached in `target/<profile>/vgpu-test-clients` and rebuilt when a source is newer) and
/// returns its path. Include path: `tests/c` and `cuda-headers/include`; `-ldl -lpthread`
/// are always linked; `extra_flags` come before them (e.g. [`link_libcuda`]).
pub fn build_c_client(name: &str, extra_flags: &[String]) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let root = workspace_root();
    let cdir = root.join("tests/c");
    let src = cdir.join(format!("{name}.c"));
    assert!(src.exists(), "no C client {}", src.display());
    let mut key = name.to_string();
    for f in extra_flags {
        key.push('\0');
        key.push_str(f);
    }
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let out_dir = target_profile_dir().join("vgpu-test-clients");
    std::fs::create_dir_all(&out_dir).expect("create client dir");
    let out = out_dir.join(format!("{name}-{:016x}", fnv1a(key.as_bytes())));

    let mut sources = vec![src.clone(), root.join("cuda-headers/include/vgpu_cuda.h")];
    if let Ok(rd) = std::fs::read_dir(&cdir) {
        sources.extend(
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension() == Some(OsStr::new("h"))),
        );
    }
    let fresh = match (
        std::fs::metadata(&out).and_then(|m| m.modified()).ok(),
        newest_mtime(&sources),
    ) {
        (Some(o), Some(s)) => o >= s,
        _ => false,
    };
    if !fresh {
        let tmp = out_dir.join(unique_name(&format!(".{name}.tmp")));
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let mut cmd = Command::new(&cc);
        cmd.args(["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra"])
            .arg("-Wno-deprecated-declarations")
            .arg(format!("-I{}", cdir.display()))
            .arg(format!("-I{}", root.join("cuda-headers/include").display()))
            .arg(&src)
            .arg("-o")
            .arg(&tmp)
            .args(extra_flags)
            .args(["-ldl", "-lpthread"]);
        let res = run(&mut cmd, Duration::from_secs(120));
        assert!(
            res.status.success(),
            "compiling {} failed ({:?} {:?}):\n{}",
            src.display(),
            cc,
            extra_flags,
            res.describe()
        );
        std::fs::rename(&tmp, &out).expect("install compiled client");
    }
    built.insert(key, out.clone());
    out
}

// ---------------------------------------------------------------------------------------
// Python venv
// ---------------------------------------------------------------------------------------

/// `.venv/bin/python` when `scripts/setup-venv.sh` has run.
pub fn venv_python() -> Option<PathBuf> {
    let p = std::env::var_os("VGPU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
        .join("bin/python");
    p.exists().then_some(p)
}

/// The venv's `site-packages` directory.
pub fn venv_site_packages() -> Option<PathBuf> {
    let py = venv_python()?;
    let lib = py.parent()?.parent()?.join("lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}

fn venv_path(rel: &str) -> Option<PathBuf> {
    let p = venv_site_packages()?.join(rel);
    p.exists().then_some(p)
}

/// Directory of the real `cuda.h` (wheel `nvidia-cuda-runtime-cu12`).
pub fn venv_cuda_include() -> Option<PathBuf> {
    venv_path("nvidia/cuda_runtime/include/cuda.h").map(|p| p.parent().unwrap().to_path_buf())
}

/// Directory of the real `nvml.h` (wheel `nvidia-nvml-dev-cu12`).
pub fn venv_nvml_include() -> Option<PathBuf> {
    venv_path("nvidia/nvml_dev/include/nvml.h").map(|p| p.parent().unwrap().to_path_buf())
}

/// The real `libcudart.so.12` (wheel `nvidia-cuda-runtime-cu12`).
pub fn venv_libcudart() -> Option<PathBuf> {
    venv_path("nvidia/cuda_runtime/lib/libcudart.so.12")
}

/// True when running under CI (`CI` set and not empty/"false"/"0").
pub fn in_ci() -> bool {
    matches!(std::env::var("CI"), Ok(v) if !v.is_empty() && v != "false" && v != "0")
}

/// The venv's Python for a test that needs it. Without a venv: under CI the test fails with
/// a clear message; elsewhere it prints a skip note and returns `None` (the caller returns).
pub fn require_venv(test: &str) -> Option<PathBuf> {
    if let Some(p) = venv_python() {
        return Some(p);
    }
    let msg = format!(
        "{test}: no Python venv at {} — run scripts/setup-venv.sh",
        workspace_root().join(".venv").display()
    );
    if in_ci() {
        panic!("{msg} (required under CI)");
    }
    eprintln!("SKIP {msg}");
    None
}

/// Like [`require_venv`] for an optional venv file (header, library).
pub fn require_venv_file(test: &str, what: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    let msg = format!("{test}: {what} not found in the venv — run scripts/setup-venv.sh");
    if in_ci() {
        panic!("{msg} (required under CI)");
    }
    eprintln!("SKIP {msg}");
    None
}

// ---------------------------------------------------------------------------------------
// NVIDIA's own tools (scripts/setup-nvidia-tools.sh)
// ---------------------------------------------------------------------------------------

/// NVIDIA's `nvidia-smi` and `nvtop`, unpacked (never installed) from Debian's packages by
/// `scripts/setup-nvidia-tools.sh`.
#[derive(Debug, Clone)]
pub struct NvidiaTools {
    pub nvidia_smi: PathBuf,
    pub nvtop: PathBuf,
    /// The driver version this nvidia-smi belongs to (its package version without the
    /// Debian revision, e.g. `535.261.03`): what the simulator must report for it.
    pub driver_version: String,
}

/// Where the setup script unpacks the tools (`VGPU_NVIDIA_TOOLS` overrides).
pub fn nvidia_tools_dir() -> PathBuf {
    std::env::var_os("VGPU_NVIDIA_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/nvidia-tools"))
}

/// The unpacked tools, if the setup script has run.
pub fn nvidia_tools() -> Option<NvidiaTools> {
    let dir = nvidia_tools_dir();
    let versions = std::fs::read_to_string(dir.join("VERSIONS")).ok()?;
    let smi_version = versions
        .lines()
        .find_map(|l| l.strip_prefix("nvidia-smi="))?
        .trim();
    let driver_version = smi_version.split('-').next()?.to_string();
    let tools = NvidiaTools {
        nvidia_smi: dir.join("usr/lib/nvidia/current/nvidia-smi"),
        nvtop: dir.join("usr/bin/nvtop"),
        driver_version,
    };
    (tools.nvidia_smi.exists() && tools.nvtop.exists()).then_some(tools)
}

/// The tools for a test that needs them. Missing: under CI the test fails (a broken
/// download is a failure, not a skip); elsewhere it prints a skip note and returns `None`.
pub fn require_nvidia_tools(test: &str) -> Option<NvidiaTools> {
    if let Some(t) = nvidia_tools() {
        return Some(t);
    }
    let msg = format!(
        "{test}: no nvidia-smi/nvtop in {} — run scripts/setup-nvidia-tools.sh",
        nvidia_tools_dir().display()
    );
    if in_ci() {
        panic!("{msg} (required under CI)");
    }
    eprintln!("SKIP {msg}");
    None
}

/// A program on `PATH` (e.g. `tmux`), for a test that needs it; missing: as
/// [`require_nvidia_tools`] (fails under CI, skip note elsewhere).
pub fn require_program(test: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("{test}: `{name}` is not installed");
        if in_ci() {
            panic!("{msg} (required under CI)");
        }
        eprintln!("SKIP {msg}");
    }
    found
}

// ---------------------------------------------------------------------------------------
// AMD's own tools (scripts/setup-amd-clients.sh)
// ---------------------------------------------------------------------------------------

/// Debian's rocm-smi 5.2.3 (scripts/setup-amd-clients.sh), unpacked into the test's
/// directory beside the simulated `librocm_smi64.so.1` (the tool loads
/// `../../lib/librocm_smi64.so.1` from its own path). Returns the tool's `rocm_smi.py`.
/// Not unpacked: under CI the test fails; elsewhere it prints a skip note and returns `None`.
pub fn rocm_smi_tool(env: &SimEnv) -> Option<PathBuf> {
    let src = workspace_root().join(".amd-clients/rocm-smi");
    if !src.join("usr/libexec/rocm_smi/rocm_smi.py").exists() {
        let msg = "rocm-smi not unpacked in .amd-clients — run scripts/setup-amd-clients.sh";
        if in_ci() {
            panic!("{msg} (required under CI)");
        }
        eprintln!("SKIP {msg}");
        return None;
    }
    let root = env.dir().join("rocm-smi");
    let tool = root.join("usr/libexec/rocm_smi");
    std::fs::create_dir_all(&tool).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    for f in ["rocm_smi.py", "rsmiBindings.py"] {
        std::fs::copy(src.join("usr/libexec/rocm_smi").join(f), tool.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(
        sim_lib_dir().join("librocm_smi64.so.1"),
        root.join("usr/lib/librocm_smi64.so.1"),
    )
    .unwrap();
    Some(tool.join("rocm_smi.py"))
}

/// The number after `label` on rocm-smi's `GPU[0]` line that has it.
pub fn rocm_smi_field(out: &str, label: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("GPU[0]") && l.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"));
    line.rsplit(':')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad {label:?} line {line:?}"))
}

/// Debian's hipcc (`.ci/run` installs `hipcc libamdhip64-dev`), for a test that needs it.
/// Missing: under CI the test fails; elsewhere it prints a skip note and returns `None`.
pub fn require_hipcc() -> Option<PathBuf> {
    let found = ["/usr/bin/hipcc", "/opt/rocm/bin/hipcc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        let msg = "hipcc not installed (apt-get install hipcc libamdhip64-dev)";
        if in_ci() {
            panic!("{msg} (required under CI)");
        }
        eprintln!("SKIP {msg}");
    }
    found
}

/// `tests/hip/vector_add.hip` built with `hipcc` for gfx90a (Debian's clang 15 does not know
/// gfx942), cached in `target/<profile>/vgpu-test-clients` and rebuilt when the source is newer.
pub fn hip_vector_add(hipcc: &Path) -> PathBuf {
    let src = workspace_root().join("tests/hip/vector_add.hip");
    let dir = target_profile_dir().join("vgpu-test-clients");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("vector_add-gfx90a");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&exe).is_none() || mtime(&exe) < mtime(&src) {
        let tmp = dir.join(format!(".vector_add.{}", std::process::id()));
        let out = run(
            Command::new(hipcc)
                .args(["--offload-arch=gfx90a", "-O1"])
                .arg(&src)
                .arg("-o")
                .arg(&tmp),
            Duration::from_secs(300),
        );
        out.assert_success("hipcc vector_add.hip");
        // Another test process may have built it meanwhile: either copy is the same program.
        let _ = std::fs::rename(&tmp, &exe);
    }
    exe
}

// ---------------------------------------------------------------------------------------
// running processes
// ---------------------------------------------------------------------------------------

/// What a finished child left.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// `key=value` lines of stdout (the last value wins for a repeated key).
    pub fn kv(&self) -> Kv {
        Kv::parse(&self.stdout)
    }

    /// Status, stdout and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Panics (with the whole output) unless the child exited 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.status.success(), "{what} failed\n{}", self.describe());
        self
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Runs `cmd` to completion with no stdin; kills it (SIGKILL) and panics after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {timeout:?}; killed\n--- stdout ---\n{stdout}\n\
                 --- stderr ---\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// [`run`] with [`DEFAULT_TIMEOUT`].
pub fn run_default(cmd: &mut Command) -> Output {
    run(cmd, DEFAULT_TIMEOUT)
}

/// A long-running child whose stdout is read line by line as it comes (e.g. a process that
/// allocates, prints `ready=1`, and holds until its stdin closes). Killed on drop.
pub struct Child {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    deadline: Instant,
    what: String,
}

impl Child {
    /// Starts `cmd` with piped stdin/stdout; it is killed after `limit` at the latest.
    pub fn spawn(cmd: &mut Command, limit: Duration) -> Child {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Some(drain(child.stderr.take()));
        Child {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
            deadline: Instant::now() + limit,
            what,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the next stdout line (None at EOF or after `timeout`).
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let limit = timeout.min(self.deadline.saturating_duration_since(Instant::now()));
        match self.lines.recv_timeout(limit) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(_) => None,
        }
    }

    /// Reads lines until one satisfies `pred`; panics (with what was seen) on EOF/timeout.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(l) if pred(&l) => return l,
                Some(_) => continue,
                None => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{}: expected line not seen within {timeout:?} (exit: {status:?})\n\
                         --- stdout so far ---\n{}",
                        self.what,
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the line `key=value`.
    pub fn wait_for_kv(&mut self, key: &str, value: &str, timeout: Duration) {
        let want = format!("{key}={value}");
        self.wait_for(timeout, |l| l == want);
    }

    /// Everything read from stdout so far, parsed as `key=value`.
    pub fn kv(&self) -> Kv {
        Kv::parse(&self.seen.join("\n"))
    }

    /// Lines read so far.
    pub fn lines_seen(&self) -> &[String] {
        &self.seen
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// Closes the child's stdin (the C clients' "hold" scenarios end at EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin and waits for exit (bounded by the spawn limit); returns the output.
    pub fn finish(mut self) -> Output {
        let start = Instant::now();
        self.close_stdin();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > self.deadline {
                self.kill9();
                panic!(
                    "{}: did not exit in time; killed\n--- stdout ---\n{}",
                    self.what,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Output {
            status,
            stdout: self.seen.join("\n"),
            stderr,
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// key=value output
// ---------------------------------------------------------------------------------------

/// Parsed `key=value` lines. Accessors panic with the whole output when a key is missing or
/// not a number, so a test failure always shows what the client printed.
#[derive(Debug, Clone, Default)]
pub struct Kv {
    map: HashMap<String, String>,
    text: String,
}

impl Kv {
    /// Parses every `key=value` line (first `=` splits; other lines are ignored).
    pub fn parse(text: &str) -> Kv {
        let mut map = HashMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                if !k.contains(' ') {
                    map.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        Kv {
            map,
            text: text.to_string(),
        }
    }

    /// The value, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value; panics if missing.
    pub fn str(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("key `{key}` missing in output:\n{}", self.text))
    }

    /// The value as an integer; panics if missing or not an integer.
    pub fn i64(&self, key: &str) -> i64 {
        let v = self.str(key);
        v.parse()
            .unwrap_or_else(|_| panic!("`{key}={v}` is not an integer; output:\n{}", self.text))
    }

    /// The value as an unsigned integer.
    pub fn u64(&self, key: &str) -> u64 {
        let v = self.str(key);
        v.parse().unwrap_or_else(|_| {
            panic!(
                "`{key}={v}` is not an unsigned integer; output:\n{}",
                self.text
            )
        })
    }

    /// The value as a float.
    pub fn f64(&self, key: &str) -> f64 {
        let v = self.str(key);
        v.parse()
            .unwrap_or_else(|_| panic!("`{key}={v}` is not a number; output:\n{}", self.text))
    }

    /// Keys starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(String::as_str)
            .collect();
        v.sort();
        v
    }

    /// The raw text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Formats a byte count as `N (x.y MiB)` for messages.
pub fn fmt_bytes(b: u64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{b} ({:.1} MiB)", b as f64 / 1048576.0);
    s
}

/// Current wall-clock time in microseconds since the epoch (NVML timestamps).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Current wall-clock time in nanoseconds since the epoch (the C clients' `*_ns` values).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
