//! `vgpuctl`: run a command under a GPU slice, and look at the simulated GPU.
//!
//! ```text
//! vgpuctl run [--gpumem SIZE] [--gpucores PCT] [--device LIST] [--shared-cache PATH]
//!             [--sim | --no-sim] -- CMD [ARGS...]
//! vgpuctl sim status [--json]
//! vgpuctl sim reset
//! ```
//!
//! `run` sets the environment contract HAMi's device plugin would set (DESIGN §2), puts
//! libvgpu.so in `LD_PRELOAD` and execs the command. With no NVIDIA driver on the machine
//! it runs over the simulated GPU (and says so), so the same command works everywhere.

// The env-contract parser is shared with libvgpu by source, not by linking the library:
// linking libvgpu's rlib would put its `dlsym` and CUDA exports into this executable.
#[allow(dead_code)]
#[path = "../../src/config.rs"]
mod config;
mod exporter;
mod inspect;
mod install;
mod node;
mod smi;
mod top;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage:
  vgpuctl run [--gpumem SIZE] [--gpucores PCT] [--device LIST] [--shared-cache PATH]
              [--sim | --no-sim] -- CMD [ARGS...]
      Run CMD with libvgpu preloaded and the slice set: SIZE like 3000m or 8g (per device),
      PCT 1-100, LIST like 0 or 0,1 or GPU-<uuid>. Without an NVIDIA driver the simulated
      GPU is used (--sim forces it, --no-sim forbids it). CMD and its children are one
      container: they share the slice through a region of their own (removed at the end)
      unless --shared-cache or CUDA_DEVICE_MEMORY_SHARED_CACHE names one.
  vgpuctl inspect [PATH] [--json]
      Devices, limits and processes (usage by kind, alive or stale) of a container's shared
      region (default: $CUDA_DEVICE_MEMORY_SHARED_CACHE or /tmp/cudevshr.cache).
  vgpuctl smi                   nvidia-smi-like table through NVML, as this process sees it
  vgpuctl sim status [--json]   ground truth of the simulated GPU (memory, busy time)
  vgpuctl sim reset             delete the simulated GPU's state file";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match args.first().and_then(|a| a.to_str()) {
        Some("run") => run(&args[1..]),
        Some("sim") => sim(&args[1..]),
        Some("inspect") => {
            let json = args.iter().any(|a| a == "--json");
            let path = args[1..]
                .iter()
                .filter_map(|a| a.to_str())
                .find(|a| !a.starts_with("--"))
                .map(str::to_string)
                .or_else(|| std::env::var("CUDA_DEVICE_MEMORY_SHARED_CACHE").ok())
                .unwrap_or_else(|| config::DEFAULT_SHARED_CACHE.to_string());
            inspect::inspect(&path, json).map(|s| {
                print!("{s}");
                ExitCode::SUCCESS
            })
        }
        Some("top") => top::main(&node::strings(&args[1..])).map(|()| ExitCode::SUCCESS),
        Some("exporter") => exporter::main(&node::strings(&args[1..])).map(|()| ExitCode::SUCCESS),
        Some("install") => install::main(&node::strings(&args[1..])).map(|()| ExitCode::SUCCESS),
        Some("smi") => smi::smi().map(|s| {
            print!("{s}");
            ExitCode::SUCCESS
        }),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}\n{}", node::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("vgpuctl: {msg}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct RunOptions {
    gpumem: Option<String>,
    gpucores: Option<u32>,
    device: Option<String>,
    shared_cache: Option<String>,
    sim: Option<bool>,
    command: Vec<OsString>,
}

fn parse_run(args: &[OsString]) -> Result<RunOptions, String> {
    let mut o = RunOptions::default();
    let mut i = 0;
    let value = |i: &mut usize, name: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .and_then(|v| v.to_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{name} needs a value"))
    };
    while i < args.len() {
        let a = args[i].to_str().unwrap_or("");
        match a {
            "--" => {
                o.command = args[i + 1..].to_vec();
                break;
            }
            "--gpumem" => {
                let v = value(&mut i, a)?;
                if config::parse_size(&v).is_none() {
                    return Err(format!(
                        "--gpumem {v:?}: expected a size like 3000m, 8g or 1073741824"
                    ));
                }
                o.gpumem = Some(v);
            }
            "--gpucores" => {
                let v = value(&mut i, a)?;
                match config::parse_percent(&v) {
                    Some(p) if p > 0 => o.gpucores = Some(p),
                    _ => return Err(format!("--gpucores {v:?}: expected 1-100")),
                }
            }
            "--device" => o.device = Some(value(&mut i, a)?),
            "--shared-cache" => o.shared_cache = Some(value(&mut i, a)?),
            "--sim" => o.sim = Some(true),
            "--no-sim" => o.sim = Some(false),
            other if !other.starts_with('-') => {
                o.command = args[i..].to_vec();
                break;
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
        i += 1;
    }
    if o.command.is_empty() {
        return Err(format!("no command given\n{USAGE}"));
    }
    Ok(o)
}

/// The directory holding this executable (where cargo also puts libvgpu.so and sim/).
fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn find_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VGPU_LIBRARY") {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        exe_dir().join("libvgpu.so"),
        PathBuf::from("/usr/local/vgpu/libvgpu.so"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            format!(
                "libvgpu.so not found next to vgpuctl or in /usr/local/vgpu (set VGPU_LIBRARY); looked at {candidates:?}"
            )
        })
}

/// Whether a real NVIDIA driver can be loaded (our simulator does not count).
fn real_driver_present() -> bool {
    // SAFETY: dlopen/dlsym/dlclose with valid strings; the handle is closed again.
    unsafe {
        let h = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if h.is_null() {
            return false;
        }
        let is_sim = !libc::dlsym(h, c"vgpu_sim_marker".as_ptr()).is_null();
        libc::dlclose(h);
        !is_sim
    }
}

fn prepend_path(var: &str, dir: &Path) -> OsString {
    let mut v = OsString::from(dir.as_os_str());
    if let Some(old) = std::env::var_os(var).filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

fn run(args: &[OsString]) -> Result<ExitCode, String> {
    let o = parse_run(args)?;
    let lib = find_library()?;
    let mut cmd = Command::new(&o.command[0]);
    cmd.args(&o.command[1..]);

    let use_sim = match o.sim {
        Some(s) => s,
        None => !real_driver_present(),
    };
    if use_sim {
        let sim_dir = exe_dir().join("sim");
        if !sim_dir.join("libcuda.so.1").exists() {
            return Err(format!(
                "no NVIDIA driver here and no simulated GPU at {} (build it with cargo build --release)",
                sim_dir.display()
            ));
        }
        eprintln!(
            "vgpuctl: no NVIDIA driver in use: running over the simulated GPU ({})",
            sim_dir.display()
        );
        cmd.env("LD_LIBRARY_PATH", prepend_path("LD_LIBRARY_PATH", &sim_dir));
    }
    let mut preload = OsString::from(lib.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    cmd.env("LD_PRELOAD", preload);
    if let Some(m) = &o.gpumem {
        cmd.env("CUDA_DEVICE_MEMORY_LIMIT", m);
    }
    if let Some(c) = o.gpucores {
        cmd.env("CUDA_DEVICE_SM_LIMIT", c.to_string());
    }
    if let Some(d) = &o.device {
        cmd.env("CUDA_VISIBLE_DEVICES", d);
    }
    // One `vgpuctl run` is one container: unless a region is named (option or
    // environment), the command tree gets a region of its own, removed when it ends.
    let own_region = match (
        &o.shared_cache,
        std::env::var_os("CUDA_DEVICE_MEMORY_SHARED_CACHE"),
    ) {
        (Some(s), _) => {
            cmd.env("CUDA_DEVICE_MEMORY_SHARED_CACHE", s);
            None
        }
        (None, Some(_)) => None,
        (None, None) => {
            let p = std::env::temp_dir().join(format!("vgpuctl-run-{}.cache", std::process::id()));
            cmd.env("CUDA_DEVICE_MEMORY_SHARED_CACHE", &p);
            Some(p)
        }
    };
    let Some(region) = own_region else {
        let err = cmd.exec();
        return Err(format!("cannot run {:?}: {err}", o.command[0]));
    };
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", o.command[0]))?;
    let _ = std::fs::remove_file(&region);
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn sim(args: &[OsString]) -> Result<ExitCode, String> {
    let sub = args.first().and_then(|a| a.to_str()).unwrap_or("status");
    let json = args.iter().any(|a| a == "--json");
    match sub {
        "status" => {
            let report = vgpu_sim_core::status_report(None, json)?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        "reset" => {
            let p = std::env::var_os("VGPU_SIM_STATE")
                .map(PathBuf::from)
                .unwrap_or_else(vgpu_sim_core::default_state_path);
            match std::fs::remove_file(&p) {
                Ok(()) => println!("removed {}", p.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("no state file at {}", p.display())
                }
                Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown sim command {other:?}\n{USAGE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_run_options() {
        let o = parse_run(&os(&[
            "--gpumem",
            "3000m",
            "--gpucores",
            "30",
            "--",
            "python3",
            "-V",
        ]))
        .unwrap();
        assert_eq!(o.gpumem.as_deref(), Some("3000m"));
        assert_eq!(o.gpucores, Some(30));
        assert_eq!(o.command, os(&["python3", "-V"]));
        let o = parse_run(&os(&["--sim", "app"])).unwrap();
        assert_eq!(o.sim, Some(true));
        assert_eq!(o.command, os(&["app"]));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(parse_run(&os(&["--gpumem", "lots", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--gpucores", "0", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--gpucores", "101", "--", "x"])).is_err());
        assert!(parse_run(&os(&["--gpumem", "1g"])).is_err());
        assert!(parse_run(&os(&["--frobnicate", "--", "x"])).is_err());
    }
}
