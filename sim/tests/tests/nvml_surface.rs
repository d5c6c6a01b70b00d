//! The simulated libnvidia-ml exports the whole NVML surface of the table in cuda-headers:
//! every row, the names NVIDIA's nvidia-smi looks up, and `stub` rows that answer
//! UNINITIALIZED before `nvmlInit` and NOT_SUPPORTED after.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::time::Duration;

macro_rules! rows {
    ($( $name:ident = [$hook:ident $sim:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ); )*) => {
        /// Every row of the NVML table: (symbol, `sim` or `stub`).
        const ROWS: &[(&str, &str)] = &[ $( (stringify!($name), stringify!($sim)) ),* ];
    };
}
cuda_headers::nvml_api!(rows);

/// The dynamic symbols the simulated library exports (`objdump -T`).
fn exported() -> BTreeSet<String> {
    require_sim();
    let lib = sim_lib_dir().join("libnvidia-ml.so.1");
    let out = run(
        std::process::Command::new("objdump").arg("-T").arg(&lib),
        Duration::from_secs(60),
    );
    out.assert_success("objdump -T");
    out.stdout
        .lines()
        .filter(|l| l.contains(" .text"))
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_row_of_the_table_is_exported() {
    let have = exported();
    let missing: Vec<&str> = ROWS
        .iter()
        .map(|r| r.0)
        .chain(["nvmlErrorString", "nvmlInternalGetExportTable"])
        .filter(|n| !have.contains(*n))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    let extra: Vec<&String> = have
        .iter()
        .filter(|n| n.starts_with("nvml"))
        .filter(|n| {
            !ROWS.iter().any(|r| r.0 == n.as_str())
                && !["nvmlErrorString", "nvmlInternalGetExportTable"].contains(&n.as_str())
        })
        .collect();
    assert!(extra.is_empty(), "exported outside the table: {extra:?}");
}

/// NUL-terminated strings of a binary that look like NVML symbol names.
fn nvml_names_in(binary: &[u8]) -> BTreeSet<String> {
    binary
        .split(|&b| b == 0)
        .filter(|s| s.starts_with(b"nvml") && s.len() > 4)
        .filter(|s| s.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn every_nvml_name_nvidia_smi_looks_up_is_exported() {
    let Some(tools) = require_nvidia_tools("every_nvml_name_nvidia_smi_looks_up") else {
        return;
    };
    let wanted = nvml_names_in(&std::fs::read(&tools.nvidia_smi).expect("read nvidia-smi"));
    assert!(
        wanted.len() > 100 && wanted.contains("nvmlInternalGetExportTable"),
        "the binary's NVML names were not found: {wanted:?}"
    );
    let have = exported();
    let missing: Vec<&String> = wanted.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "nvidia-smi {} looks up names the simulator lacks: {missing:?}",
        tools.driver_version
    );
}

#[test]
fn stub_rows_answer_uninitialized_then_not_supported() {
    require_sim();
    let stubs: Vec<&str> = ROWS.iter().filter(|r| r.1 == "stub").map(|r| r.0).collect();
    assert!(!stubs.is_empty());
    // Stubs touch none of their arguments, so calling them without any is ABI-safe.
    let script = format!(
        "import ctypes, sys\n\
         lib = ctypes.CDLL('libnvidia-ml.so.1')\n\
         names = {stubs:?}\n\
         before = {{n: getattr(lib, n)() for n in names}}\n\
         assert lib.nvmlInit_v2() == 0\n\
         after = {{n: getattr(lib, n)() for n in names}}\n\
         bad = [(n, before[n], after[n]) for n in names if (before[n], after[n]) != (1, 3)]\n\
         print('checked', len(names), 'bad', bad)\n"
    );
    let env = SimEnv::new();
    let out = run(
        env.command("python3").args(["-c", &script]),
        Duration::from_secs(60),
    );
    out.assert_success("python3 ctypes over the stubs");
    assert_eq!(
        out.stdout.trim(),
        format!("checked {} bad []", stubs.len()),
        "{}",
        out.describe()
    );
}
