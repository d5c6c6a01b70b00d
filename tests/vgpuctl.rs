//! The main job, `vgpuctl run`, and the container's nvidia-smi view, `vgpuctl smi`, as a
//! user runs them.

mod common;

use std::process::Command;

use common::*;
use testkit::{run_default, target_profile_dir};

fn vgpuctl(sim: &testkit::SimEnv) -> Command {
    let mut c = sim.command(target_profile_dir().join("vgpuctl"));
    // vgpuctl finds the simulator itself (next to it): no LD_LIBRARY_PATH from the harness.
    c.env_remove("LD_LIBRARY_PATH");
    c
}

#[test]
fn run_puts_a_program_in_a_slice_over_the_simulated_gpu() {
    testkit::require_sim();
    let sim = machine();
    let demo = target_profile_dir().join("vgpu-demo");
    let out = run_default(
        vgpuctl(&sim)
            .args(["run", "--gpumem", "1g", "--sim", "--"])
            .arg(&demo)
            .args(["--chunk", "100", "--launches", "10"]),
    );
    out.assert_success("vgpuctl run");
    assert!(
        out.stderr.contains("simulated GPU"),
        "says so: {}",
        out.stderr
    );
    assert!(
        out.stdout.contains("cuDeviceTotalMem says 1024 MiB"),
        "{}",
        out.describe()
    );
    // 1 GiB - 64 MiB context = 960 MiB: nine chunks of 100 MiB, then out of memory.
    assert!(
        out.stdout.contains("allocated 9 chunks of 100 MiB = 900 MiB, then stopped: cuMemAlloc returned CUDA_ERROR_OUT_OF_MEMORY (2)"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains("ran 10 kernels"), "{}", out.describe());
}

#[test]
fn run_rejects_bad_options_with_one_line() {
    let sim = machine();
    let out = run_default(vgpuctl(&sim).args(["run", "--gpumem", "lots", "--", "true"]));
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("--gpumem \"lots\""), "{}", out.stderr);
}

#[test]
fn smi_under_the_library_shows_the_containers_view() {
    testkit::require_sim();
    let sim = machine();
    let out = run_default(
        vgpuctl(&sim)
            .args(["run", "--gpumem", "2g", "--sim", "--"])
            .arg(target_profile_dir().join("vgpuctl"))
            .arg("smi"),
    );
    out.assert_success("vgpuctl run -- vgpuctl smi");
    assert!(out.stdout.contains("/   2048MiB"), "{}", out.describe());
    assert!(
        out.stdout.contains("NVIDIA H100 80GB HBM3"),
        "{}",
        out.describe()
    );
}

#[test]
fn run_gives_the_command_tree_a_region_of_its_own_and_its_exit_code() {
    testkit::require_sim();
    let sim = machine();
    let script = "test -f \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" || exit 9; \
                  case \"$CUDA_DEVICE_MEMORY_SHARED_CACHE\" in */vgpuctl-run-*) ;; *) exit 8;; esac; \
                  echo region=$CUDA_DEVICE_MEMORY_SHARED_CACHE; exit 7";
    let mut c = vgpuctl(&sim);
    c.env_remove("CUDA_DEVICE_MEMORY_SHARED_CACHE")
        .args(["run", "--gpumem", "1g", "--sim", "--", "sh", "-c"])
        .arg(format!(
            "{} alloc-hold 1048576 0 >/dev/null && {script}",
            client(Style::Dlopen).display()
        ));
    let out = run_default(&mut c);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code passed through\n{}",
        out.describe()
    );
    let region = out.kv().str("region").to_string();
    assert!(
        !std::path::Path::new(&region).exists(),
        "{region} removed at the end"
    );
}
