//! A process that never touches CUDA must not notice libvgpu: no output, no extra thread,
//! no file. (What the library exports is checked in tests/release_artifact.rs.)

mod common;

use common::*;
use testkit::run_default;

#[test]
fn a_process_without_cuda_gets_no_output_thread_or_file() {
    let sim = machine()
        .var("CUDA_DEVICE_MEMORY_LIMIT", "1g")
        .var("LIBCUDA_LOG_LEVEL", "4");
    let mut c = sim.command("/bin/cat");
    c.env("LD_PRELOAD", libvgpu()).arg("/proc/self/status");
    let out = run_default(&mut c);
    out.assert_success("cat under LD_PRELOAD");
    assert_eq!(out.stderr, "", "no output from the library");
    let threads = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|v| v.trim().to_string());
    assert_eq!(
        threads.as_deref(),
        Some("1"),
        "no thread started:\n{}",
        out.stdout
    );
    assert!(
        !region_path(&sim).exists(),
        "no shared region created by a non-CUDA process"
    );
}

#[test]
fn a_cuda_process_does_create_the_region() {
    // The control for the test above: the same checks do see the library at work.
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let mut c = command(&sim, Style::Linked, true);
    c.args(["alloc-hold", &MIB.to_string(), "0"]);
    let out = run_default(&mut c);
    out.assert_success("alloc-hold");
    assert!(region_path(&sim).exists());
}

#[test]
fn dlopen_heavy_programs_run_unchanged_under_the_library() {
    // Python imports every extension module with dlopen + dlsym("PyInit_..."); threads call
    // dlsym from libc internals. The dlsym override must be invisible to all of it.
    let sim = machine().var("CUDA_DEVICE_MEMORY_LIMIT", "1g");
    let script = "import ctypes, ctypes.util, json, hashlib, sqlite3, ssl, threading, decimal\n\
                  t = [threading.Thread(target=lambda: hashlib.sha256(b'x').hexdigest()) for _ in range(8)]\n\
                  [x.start() for x in t]; [x.join() for x in t]\n\
                  libc = ctypes.CDLL(ctypes.util.find_library('c'))\n\
                  print('pid_ok=%d' % (libc.getpid() > 0))\n";
    let mut c = sim.command("python3");
    c.env("LD_PRELOAD", libvgpu()).args(["-c", script]);
    let out = run_default(&mut c);
    out.assert_success("python under LD_PRELOAD");
    assert_eq!(out.kv().i64("pid_ok"), 1, "{}", out.describe());
    assert_eq!(out.stderr, "", "{}", out.describe());
}
