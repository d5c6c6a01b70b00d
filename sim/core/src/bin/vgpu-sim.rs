//! `vgpu-sim status [--json] [--state PATH]` and `vgpu-sim reset [--state PATH]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: vgpu-sim status [--json] [--state PATH] | vgpu-sim reset [--state PATH]");
    eprintln!("state file: $VGPU_SIM_STATE or /dev/shm/vgpu-sim-<uid>.state");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut path: Option<PathBuf> = None;
    let mut cmd: Option<&str> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--json" => json = true,
            "--state" => {
                i += 1;
                match args.get(i) {
                    Some(p) => path = Some(PathBuf::from(p)),
                    None => return usage(),
                }
            }
            "-h" | "--help" => return usage(),
            c @ ("status" | "reset") if cmd.is_none() => cmd = Some(c),
            _ => return usage(),
        }
        i += 1;
    }
    match cmd.unwrap_or("status") {
        "status" => match vgpu_sim_core::status_report(path.as_deref(), json) {
            Ok(s) => {
                println!("{}", s.trim_end());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vgpu-sim: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            let p = path.unwrap_or_else(vgpu_sim_core::default_state_path);
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    println!("removed {}", p.display());
                    ExitCode::SUCCESS
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("no state file at {}", p.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vgpu-sim: cannot remove {}: {e}", p.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}
