//! Shared by the simulator's process-level tests: the C client styles and the figures the
//! simulator documents for its default model.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub use testkit::*;

/// The documented default model (`VGPU_SIM_MODEL=h100`).
pub const H100_NAME: &str = "NVIDIA H100 80GB HBM3";
pub const H100_SMS: i64 = 132;
pub const H100_TOTAL: u64 = 85_520_809_984;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// How a driver-API client reaches the simulated libcuda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `-lcuda`, direct calls by exported name.
    Linked,
    /// Same source compiled against NVIDIA's real cuda.h (ABI cross-check).
    LinkedRealHeaders,
    /// `dlopen("libcuda.so.1")` + `dlsym` of exact names.
    Dlopen,
    /// `dlsym("cuGetProcAddress_v2")` only, everything else by base name (libcudart's way).
    Procaddr,
    /// As `Procaddr`, with flag 2 (per-thread default stream: `_ptsz`/`_ptds` variants).
    ProcaddrPtds,
}

pub const ALL_STYLES: [Style; 5] = [
    Style::Linked,
    Style::LinkedRealHeaders,
    Style::Dlopen,
    Style::Procaddr,
    Style::ProcaddrPtds,
];

/// The compiled client for `style`; `None` (after a skip note; a failure under CI) when the
/// real headers are needed and the venv lacks them.
pub fn client(style: Style) -> Option<PathBuf> {
    require_sim();
    Some(match style {
        Style::Linked => build_c_client("linked", &link_libcuda()),
        Style::LinkedRealHeaders => {
            let Some(mut flags) = real_header_flags() else {
                require_venv_file("linked client over real headers", "cuda.h and nvml.h", None);
                return None;
            };
            flags.extend(link_libcuda());
            build_c_client("linked", &flags)
        }
        Style::Dlopen => build_c_client("dlopen_client", &[]),
        Style::Procaddr | Style::ProcaddrPtds => build_c_client("procaddr_client", &[]),
    })
}

/// A command running the `style` client with `args` on the machine `env`.
pub fn driver_cmd(env: &SimEnv, style: Style, args: &[&str]) -> Option<Command> {
    let exe = client(style)?;
    let mut c = env.command(exe);
    c.args(args);
    if style == Style::ProcaddrPtds {
        c.env("VGPU_TEST_PROCADDR_FLAGS", "2");
    }
    Some(c)
}

/// Runs the `style` client to completion (60 s limit) and checks it exited 0 with `ok=1`.
pub fn driver_ok(env: &SimEnv, style: Style, args: &[&str]) -> Option<Kv> {
    let mut c = driver_cmd(env, style, args)?;
    let out = run(&mut c, Duration::from_secs(60));
    out.assert_success(&format!("{style:?} client {args:?}"));
    let kv = out.kv();
    assert_eq!(
        kv.get("ok"),
        Some("1"),
        "{style:?} {args:?}: no ok=1\n{}",
        out.describe()
    );
    Some(kv)
}

/// The plain linked client (used where the style does not matter).
pub fn linked(env: &SimEnv, args: &[&str]) -> Kv {
    driver_ok(env, Style::Linked, args).expect("linked client always builds")
}

/// A long-running linked client (e.g. `alloc-hold`), killed on drop.
pub fn spawn_linked(env: &SimEnv, args: &[&str]) -> Child {
    let mut c = driver_cmd(env, Style::Linked, args).expect("linked client always builds");
    Child::spawn(&mut c, Duration::from_secs(120))
}

/// The NVML client's output for `args` (must exit 0 with `ok=1`).
pub fn nvml(env: &SimEnv, args: &[&str]) -> Kv {
    require_sim();
    let exe = build_c_client("nvml_client", &[]);
    let mut c = env.command(exe);
    c.args(args);
    let out = run(&mut c, Duration::from_secs(60));
    out.assert_success(&format!("nvml_client {args:?}"));
    let kv = out.kv();
    assert_eq!(
        kv.get("ok"),
        Some("1"),
        "nvml_client {args:?}: no ok=1\n{}",
        out.describe()
    );
    kv
}

/// Parses `0000:18:00.0` / `00000000:18:00.0` into (domain, bus, device, function).
pub fn parse_bus_id(s: &str) -> (u32, u32, u32, u32) {
    let bad = || -> ! { panic!("malformed PCI bus id {s:?}") };
    let (dom, rest) = s.split_once(':').unwrap_or_else(|| bad());
    let (bus, rest) = rest.split_once(':').unwrap_or_else(|| bad());
    let (dev, func) = rest.split_once('.').unwrap_or_else(|| bad());
    let h = |t: &str| u32::from_str_radix(t, 16).unwrap_or_else(|_| bad());
    (h(dom), h(bus), h(dev), h(func))
}

/// Checks the `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` form (lower-case hex).
pub fn assert_uuid_form(u: &str) {
    let groups: Vec<&str> = u.strip_prefix("GPU-").unwrap_or("").split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    assert_eq!(lens, [8, 4, 4, 4, 12], "bad UUID form {u:?}");
    assert!(
        groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit())),
        "bad UUID digits {u:?}"
    );
    assert!(
        groups.iter().any(|g| g.chars().any(|c| c != '0')),
        "all-zero UUID {u:?}"
    );
}
