//! `vgpuctl`: run a command under a GPU slice, and look at the simulated GPU.
//!
//! ```text
//! vgpuctl run [--container] [--gpumem SIZE] [--gpucores PCT] [--device LIST]
//!             [--vendor nvidia|amd] [--shared-cache PATH] [--sim | --no-sim] -- CMD [ARGS...]
//! vgpuctl sim status [--json]
//! vgpuctl sim reset
//! ```
//!
//! `run` (run.rs) sets the environment contract HAMi's device plugin would set, puts
//! libvgpu.so in `LD_PRELOAD` and runs the command; with `--container` (container.rs) in
//! new pid and mount namespaces laid out as the plugin lays out a container. With no NVIDIA
//! driver on the machine it runs over the simulated GPU (and says so), so the same command
//! works everywhere.

// The env contract is libvgpu's, from the policy crate they share (not from libvgpu's rlib:
// linking it would put its `dlsym` and CUDA exports into this executable).
use vgpu_policy::config;
mod container;
mod exporter;
mod inspect;
mod install;
mod node;
mod run;
mod smi;
mod top;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  vgpuctl run [--container] [--gpumem SIZE] [--gpucores PCT] [--device LIST]
              [--vendor nvidia|amd] [--shared-cache PATH] [--sim | --no-sim] -- CMD [ARGS...]
      Run CMD with libvgpu enforcing the slice: SIZE like 3000m or 8g (per device),
      PCT 1-100, LIST like 0 or 0,1 or GPU-<uuid>. --container: in new pid and mount
      namespaces laid out as HAMi's device plugin lays out a container. --vendor amd: the
      amd-device-plugin's contract (HIP_DEVICE_MEMORY_LIMIT, ROCR_VISIBLE_DEVICES). Without
      the vendor's driver the simulated GPU is used (--sim forces it, --no-sim forbids it). CMD and its
      children share the slice through a region of their own (removed at the end) unless
      --shared-cache or CUDA_DEVICE_MEMORY_SHARED_CACHE names one. See vgpuctl run --help.
  vgpuctl inspect [PATH] [--json]
      Devices, limits and processes (usage by kind, alive or stale) of a container's shared
      region (default: $CUDA_DEVICE_MEMORY_SHARED_CACHE or /tmp/cudevshr.cache).
  vgpuctl smi                   nvidia-smi-like table through NVML (ROCm SMI where there
                                is no NVML: AMD GPUs), as this process sees it
  vgpuctl sim status [--json]   ground truth of the simulated GPU (memory, busy time)
  vgpuctl sim reset             delete the simulated GPU's state file";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match args.first().and_then(|a| a.to_str()) {
        Some("run") => run::run(&args[1..]),
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
        Some("-V") | Some("--version") => {
            println!("vgpuctl {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
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
