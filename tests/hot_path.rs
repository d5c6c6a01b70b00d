//! The alloc/free hot path asks the driver nothing it can know itself (issue 9 item 6): a
//! thread whose context was set through libvgpu allocates and frees with no
//! `cuCtxGetCurrent`. Counted at the driver: `tests/c/count_driver.c` stands in for
//! libcuda.so.1 (every entry point a tail jump to the simulated driver, generated here from
//! its exports), counting `cuCtxGetCurrent`. The control thread sets its context behind
//! libvgpu's back, so libvgpu must ask there: the counter is seen to count.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use testkit::{build_c_client, link_libcuda, require_sim, run, run_default, sim_lib_dir};

/// Builds the counting driver as `<dir>/libcuda.so.1`.
fn counting_driver(dir: &Path) -> PathBuf {
    let real = sim_lib_dir().join("libcuda.so.1");
    let nm = run_default(Command::new("nm").args(["-D", "--defined-only"]).arg(&real));
    nm.assert_success("nm -D of the simulated libcuda (binutils)");
    let names: Vec<&str> = nm
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| n.starts_with("cu") && *n != "cuCtxGetCurrent")
        .collect();
    assert!(names.len() > 50, "too few exports in {}", real.display());
    let mut asm = String::from(".text\n");
    for (i, n) in names.iter().enumerate() {
        writeln!(
            asm,
            ".globl {n}\n.type {n},@function\n{n}:\n  jmp *vgpu_fwd_slots+{}(%rip)\n",
            8 * i
        )
        .unwrap();
    }
    asm.push_str(
        ".section .rodata\n.globl vgpu_fwd_names\n.hidden vgpu_fwd_names\nvgpu_fwd_names:\n",
    );
    for n in &names {
        writeln!(asm, "  .asciz \"{n}\"").unwrap();
    }
    write!(
        asm,
        "  .byte 0\n.bss\n.p2align 3\n.globl vgpu_fwd_slots\n.hidden vgpu_fwd_slots\nvgpu_fwd_slots:\n  .zero {}\n.section .note.GNU-stack,\"\",@progbits\n",
        8 * names.len()
    )
    .unwrap();
    let asm_path = dir.join("forwarders.S");
    std::fs::write(&asm_path, asm).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("libcuda.so.1");
    let mut cc = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    cc.args([
        "-shared",
        "-fPIC",
        "-O1",
        "-Wall",
        "-Wl,-soname,libcuda.so.1",
    ])
    .arg(format!("-I{}", root.join("tests/c").display()))
    .arg(format!("-I{}", root.join("cuda-headers/include").display()))
    .arg(root.join("tests/c/count_driver.c"))
    .arg(&asm_path)
    .arg("-o")
    .arg(&out)
    .arg("-ldl");
    let built = run(&mut cc, std::time::Duration::from_secs(120));
    built.assert_success("building tests/c/count_driver.c");
    out
}

#[test]
fn a_context_set_through_libvgpu_is_not_asked_for_again_and_follows_every_switch() {
    require_sim();
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "2g");
    let dir = sim.dir().join("count-driver");
    std::fs::create_dir_all(&dir).unwrap();
    counting_driver(&dir);
    let client = build_c_client("ctx_cache_client", &link_libcuda());
    let mut c = sim.command(&client);
    let path = std::env::join_paths([dir.clone(), sim_lib_dir()]).unwrap();
    c.env("LD_LIBRARY_PATH", path)
        .env("VGPU_COUNT_REAL", sim_lib_dir().join("libcuda.so.1"))
        .env("LD_PRELOAD", libvgpu());
    let out = run_default(&mut c);
    out.assert_success("ctx_cache_client over the counting driver");
    let kv = out.kv();
    let why = out.describe();
    for k in ["hooked_ok", "after_push_ok", "unseen_ok"] {
        assert_eq!(kv.i64(k), 1, "{k}: every pair succeeded\n{why}");
    }
    // Not once: the hook that made the context current said which it is.
    assert_eq!(kv.u64("hooked_calls"), 0, "after cuCtxSetCurrent\n{why}");
    assert_eq!(kv.u64("after_push_calls"), 0, "after pop + push\n{why}");
    // Control: a context set behind libvgpu's back is asked for on every allocation path.
    assert!(kv.u64("unseen_calls") >= 1000, "unseen context\n{why}");
    // The cached context follows every switch: each allocation lands on its own device.
    let ctx = 64 * MIB;
    assert_eq!(kv.u64("total1"), 2 * GIB, "device 1's slice\n{why}");
    assert_eq!(kv.u64("used1"), ctx + 5 * MIB, "{why}");
    assert_eq!(
        kv.u64("total0"),
        GIB,
        "device 0's slice after a push\n{why}"
    );
    assert_eq!(kv.u64("used0"), ctx + 7 * MIB, "{why}");
    assert_eq!(
        kv.u64("total_after_pop"),
        2 * GIB,
        "back on device 1\n{why}"
    );
    assert_eq!(kv.u64("used_after_pop"), ctx + 5 * MIB, "{why}");
}
