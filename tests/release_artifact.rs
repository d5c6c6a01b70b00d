//! The shipped library's shape, checked on the binaries themselves (see docs/RELEASE.md):
//!
//! * the release artifact `target/release-glibc2.17/libvgpu.so` (scripts/build-release.sh)
//!   must pass scripts/check-glibc-floor.sh: no glibc symbol version above 2.17, no libgcc_s
//!   NEEDED. Under CI it must exist; elsewhere a missing one is a skip note.
//! * every libvgpu.so (the normal `target/<profile>/libvgpu.so` always, the release artifact
//!   when present) exports only `dlsym` and `cu*` / `nvml*` symbols: no Rust symbol leaks
//!   into the dynamic symbol table of every process it is preloaded into.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FLOOR: &str = "2.17";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: the test executable is `target/<profile>/deps/<test>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a parent dir");
    assert_eq!(
        deps.file_name(),
        Some(OsStr::new("deps")),
        "unexpected test executable location {}",
        exe.display()
    );
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// The cargo target dir (`target/`, or $CARGO_TARGET_DIR as the build saw it).
fn target_dir() -> PathBuf {
    let profile = profile_dir();
    let mut dir = profile
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf();
    // A build with --target puts the profile under target/<triple>/<profile>.
    if dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("-linux-"))
    {
        dir = dir.parent().expect("triple dir has a parent").to_path_buf();
    }
    dir
}

fn release_artifact() -> PathBuf {
    target_dir()
        .join(format!("release-glibc{FLOOR}"))
        .join("libvgpu.so")
}

fn normal_build() -> PathBuf {
    let p = profile_dir().join("libvgpu.so");
    assert!(
        p.exists(),
        "{} missing: cargo builds the cdylib with the tests; build the workspace",
        p.display()
    );
    p
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("{shown}: {e} (objdump/readelf/nm come with binutils)"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check_floor(lib: &Path, max: &str) -> Output {
    run(Command::new("bash")
        .arg(root().join("scripts/check-glibc-floor.sh"))
        .arg(lib)
        .arg(max))
}

/// Defined dynamic symbols: (type letter, name).
fn dynamic_exports(lib: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("nm").args(["-D", "--defined-only"]).arg(lib));
    assert!(
        out.status.success(),
        "nm -D {} failed:\n{}",
        lib.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "<addr> <type> <name>", or "<type> <name>" for an absolute symbol.
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [.., ty, name] if f.len() <= 3 => Some((ty.to_string(), name.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// A HIP export under one of the real library's version nodes (`hipMalloc@@hip_4.2`).
fn is_hip_export(name: &str) -> bool {
    name.split_once("@@").is_some_and(|(sym, node)| {
        (sym.starts_with("hip") || sym.starts_with("__hip")) && hip_headers::NODES.contains(&node)
    })
}

/// The rtld-audit callbacks (LD_AUDIT mode, src/interpose/audit.rs).
const AUDIT_CALLBACKS: [&str; 3] = ["la_version", "la_objopen", "la_symbind64"];

fn assert_exports_clean(lib: &Path) {
    let exports = dynamic_exports(lib);
    let leaked: Vec<String> = exports
        .iter()
        .filter(|(_, name)| {
            !(name == "dlsym"
                || AUDIT_CALLBACKS.contains(&name.as_str())
                || name.starts_with("cu")
                || name.starts_with("nvml")
                || name.starts_with("amdsmi_")
                || name.starts_with("rsmi_")
                || is_hip_export(name))
        })
        .map(|(ty, name)| format!("{ty} {name}"))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} exports symbols other than dlsym/la_*/cu*/nvml*/hip*@@node: {leaked:?}",
        lib.display()
    );
    assert!(
        exports
            .iter()
            .any(|(ty, name)| name == "dlsym" && (ty == "T" || ty == "W")),
        "{} does not export the dlsym trampoline (exports: {} symbols)",
        lib.display(),
        exports.len()
    );
    for callback in AUDIT_CALLBACKS {
        assert!(
            exports
                .iter()
                .any(|(ty, name)| name == callback && ty == "T"),
            "{} does not export the audit callback {callback}",
            lib.display()
        );
    }
    eprintln!(
        "{}: {} exports, all dlsym/cu*/nvml*/hip*@@node",
        lib.display(),
        exports.len()
    );
}

#[test]
fn release_artifact_meets_glibc_floor() {
    let lib = release_artifact();
    if !lib.exists() {
        if in_ci() {
            panic!(
                "{} missing: under CI the release artifact must be built first: run scripts/build-release.sh",
                lib.display()
            );
        }
        eprintln!(
            "SKIP: {} not built (run scripts/build-release.sh to check it)",
            lib.display()
        );
        return;
    }
    let out = check_floor(&lib, FLOOR);
    let report = text(&out);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "check-glibc-floor.sh failed on {}:\n{report}",
        lib.display()
    );
    assert_exports_clean(&lib);
}

#[test]
fn normal_build_exports_only_the_interception_surface() {
    assert_exports_clean(&normal_build());
}

/// The checker's failure path works on any host: every x86_64 glibc symbol is at least
/// GLIBC_2.2.5, so a maximum of 2.0 must be rejected, naming the offending versions.
#[test]
fn floor_checker_rejects_a_too_new_library() {
    let lib = normal_build();
    let out = check_floor(&lib, "2.0");
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "checker should fail with 1 for max 2.0:\n{report}"
    );
    assert!(
        report.contains("FAIL  GLIBC_2.2.5 > GLIBC_2.0"),
        "unexpected report:\n{report}"
    );
}
