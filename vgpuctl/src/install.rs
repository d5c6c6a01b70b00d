//! `vgpuctl install [--hook-path DIR] [--library PATH] [--hami-version V] [--glibc-floor X.Y]`
//! and `vgpuctl install --uninstall [--hook-path DIR]`: put libvgpu where HAMi's device
//! plugin mounts it from, without crashing the containers that run the old one.
//!
//! HAMi's device plugin bind-mounts `GetLibPath()` into every container: `<hook>/vgpu/
//! libvgpu.so.<HAMi version>` when that file exists, else `<hook>/vgpu/libvgpu.so`
//! (`pkg/device-plugin/nvidiadevice/nvinternal/plugin/util.go`), and `<hook>/vgpu/
//! ld.so.preload` as the container's `/etc/ld.so.preload`. A bind mount of a file pins its
//! inode, and every process of such a container has that inode mapped: rewriting the file
//! in place (`cp`, which truncates) changes the code under running processes and kills them
//! (HAMi#753). So nothing here ever opens an existing target for writing:
//!
//! * every target is replaced by writing a new file next to it (`O_EXCL`, fsync) and
//!   `rename(2)`-ing it over the name: running containers keep the old inode, new
//!   containers get the new one;
//! * the file that was there is kept by a hard link in `<hook>/vgpu/.vgpuctl-backup/`
//!   (same inode, no copy), and a manifest records which names were replaced and which
//!   were created; `--uninstall` renames the originals back and unlinks what we created
//!   (unlinking a mapped file is safe: the inode lives while it is mapped);
//! * installing again (an upgrade) keeps the first backup: the original is HAMi's.
//!
//! Targets: `libvgpu.so`, every `libvgpu.so.*` already there (the version HAMi's postStart
//! hook copied) and `libvgpu.so.<V>` for `--hami-version V`; `ld.so.preload` gets
//! `<hook>/vgpu/libvgpu.so` (the path inside the container, where the mount puts it).
//!
//! The glibc floor: a library that needs a newer glibc than a container image has is
//! silently skipped by `ld.so` ("cannot be preloaded ... ignored": no cap at all). The
//! library's required `GLIBC_x.y` versions are read from its ELF version references and must
//! be at most `--glibc-floor` (default 2.17, the shipped build's floor, docs/RELEASE.md) and
//! at most the node's own glibc.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::node;

const USAGE: &str = "usage: vgpuctl install [--hook-path DIR] [--library PATH] [--hami-version V] [--glibc-floor X.Y]\n       vgpuctl install --uninstall [--hook-path DIR]";
const BACKUP_DIR: &str = ".vgpuctl-backup";
const MANIFEST: &str = "manifest";
const PRELOAD: &str = "ld.so.preload";
/// The shipped build's floor (scripts/build-release.sh).
pub const DEFAULT_GLIBC_FLOOR: &str = "2.17";

#[derive(Debug, PartialEq)]
struct Options {
    hook: PathBuf,
    library: Option<PathBuf>,
    hami_version: Option<String>,
    floor: Version,
    uninstall: bool,
}

/// The options, or `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let (mut library, mut hami_version, mut floor) = (None, None, None);
    let mut uninstall = false;
    let Some(common) = node::parse_options(
        args,
        USAGE,
        &mut [
            node::Opt::Value("--library", &mut library),
            node::Opt::Value("--hami-version", &mut hami_version),
            node::Opt::Value("--glibc-floor", &mut floor),
            node::Opt::Flag("--uninstall", &mut uninstall),
        ],
    )?
    else {
        return Ok(None);
    };
    if let Some(f) = common.files.first() {
        return Err(format!("unexpected argument {f:?}\n{USAGE}"));
    }
    if let Some(v) = &hami_version {
        if v.is_empty() || v.contains('/') || v.starts_with('.') {
            return Err(format!(
                "--hami-version {v:?}: expected a version like v2.6.0"
            ));
        }
    }
    let floor = match floor {
        Some(v) => Version::parse(&v)
            .ok_or_else(|| format!("--glibc-floor {v:?}: expected a version like 2.17"))?,
        None => Version::parse(DEFAULT_GLIBC_FLOOR).expect("valid default"),
    };
    let o = Options {
        hook: common.hook,
        library: library.map(PathBuf::from),
        hami_version,
        floor,
        uninstall,
    };
    if !o.hook.is_absolute() {
        // The path goes into ld.so.preload, which the container reads from its own root.
        return Err(format!(
            "--hook-path {:?} must be an absolute path (it is written into ld.so.preload)",
            o.hook
        ));
    }
    Ok(Some(o))
}

// ---- glibc versions ---------------------------------------------------------------------

/// A dotted version (`2.17`, `2.2.5`), compared component by component.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(Vec<u32>);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u32>> = s.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&s.join("."))
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
fn c_str(b: &[u8], off: usize) -> Option<String> {
    let rest = b.get(off..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// Every version name an x86-64 ELF shared object requires (its `SHT_GNU_verneed` section:
/// `GLIBC_2.17`, `GLIBC_PRIVATE`, `GCC_3.0`, ...), which is what `ld.so` checks at load.
pub fn required_versions(elf: &[u8]) -> Result<Vec<String>, String> {
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    let bad = || "not a 64-bit little-endian ELF file".to_string();
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(bad());
    }
    let shoff = u64_at(elf, 0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(elf, 0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(elf, 0x3c).ok_or_else(bad)? as usize;
    let section = |i: usize| -> Option<(u32, usize, usize, u32, u32)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(elf, h + 4)?,             // sh_type
            u64_at(elf, h + 0x18)? as usize, // sh_offset
            u64_at(elf, h + 0x20)? as usize, // sh_size
            u32_at(elf, h + 0x28)?,          // sh_link
            u32_at(elf, h + 0x2c)?,          // sh_info (entries)
        ))
    };
    let mut out = Vec::new();
    for i in 0..shnum {
        let Some((ty, off, _, link, count)) = section(i) else {
            return Err("truncated section headers".into());
        };
        if ty != SHT_GNU_VERNEED {
            continue;
        }
        let (_, stroff, _, _, _) = section(link as usize).ok_or("bad string table link")?;
        // Elf64_Verneed {vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32}
        // Elf64_Vernaux {vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32}
        let mut vn = off;
        for _ in 0..count.min(1024) {
            let cnt = u16_at(elf, vn + 2).ok_or("truncated verneed")?;
            let aux = u32_at(elf, vn + 8).ok_or("truncated verneed")? as usize;
            let next = u32_at(elf, vn + 12).ok_or("truncated verneed")? as usize;
            let mut va = vn + aux;
            for _ in 0..cnt.min(1024) {
                let name = u32_at(elf, va + 8).ok_or("truncated vernaux")? as usize;
                out.push(c_str(elf, stroff + name).ok_or("bad version name")?);
                let vnext = u32_at(elf, va + 12).ok_or("truncated vernaux")? as usize;
                if vnext == 0 {
                    break;
                }
                va += vnext;
            }
            if next == 0 {
                break;
            }
            vn += next;
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The highest `GLIBC_x.y` of `names` (None when it needs none), or an error for
/// `GLIBC_PRIVATE`, which ties the library to one glibc build.
pub fn glibc_needed(names: &[String]) -> Result<Option<Version>, String> {
    if names.iter().any(|n| n == "GLIBC_PRIVATE") {
        return Err("it needs GLIBC_PRIVATE symbols (tied to one glibc build)".into());
    }
    Ok(names
        .iter()
        .filter_map(|n| n.strip_prefix("GLIBC_"))
        .filter_map(Version::parse)
        .max())
}

/// The glibc this node runs (`gnu_get_libc_version`).
fn node_glibc() -> Option<Version> {
    extern "C" {
        fn gnu_get_libc_version() -> *const libc::c_char;
    }
    // SAFETY: glibc returns a static NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    Version::parse(s.to_str().ok()?)
}

/// Checks the library against the floor and the node; returns a one-line summary.
fn check_glibc(lib: &Path, floor: &Version) -> Result<String, String> {
    let bytes = fs::read(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let names = required_versions(&bytes).map_err(|e| format!("{}: {e}", lib.display()))?;
    let needed = glibc_needed(&names).map_err(|e| format!("{}: {e}", lib.display()))?;
    let node = node_glibc();
    if let Some(n) = &needed {
        if n > floor {
            return Err(format!(
                "{} needs glibc {n}, above the floor {floor}: images with an older glibc would \
                 skip it silently (no cap at all). Install the shipped build \
                 (scripts/build-release.sh -> target/release-glibc2.17/libvgpu.so) or pass \
                 --glibc-floor {n} if every image on this node has glibc >= {n}",
                lib.display()
            ));
        }
        if let Some(node) = &node {
            if n > node {
                return Err(format!(
                    "{} needs glibc {n}, newer than this node's glibc {node}",
                    lib.display()
                ));
            }
        }
    }
    Ok(format!(
        "glibc: library needs {}, floor {floor}, node has {}",
        needed.map_or("none".to_string(), |v| v.to_string()),
        node.map_or("unknown".to_string(), |v| v.to_string())
    ))
}

// ---- atomic file replacement ------------------------------------------------------------

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `data` to a new file in `dir` and renames it over `dir/name`: readers and mappers
/// of the old file keep the old inode; nobody ever sees a partial file.
fn replace_atomically(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.vgpuctl-new-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot replace {}: {e}", dir.join(name).display()));
    }
    sync_dir(dir);
    Ok(())
}

/// The manifest: which names the install replaced (original kept in the backup directory)
/// and which it created.
#[derive(Debug, Default, PartialEq)]
struct Manifest {
    replaced: Vec<String>,
    created: Vec<String>,
}

impl Manifest {
    fn parse(text: &str) -> Manifest {
        let mut m = Manifest::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("replaced", n)) => m.replaced.push(n.to_string()),
                Some(("created", n)) => m.created.push(n.to_string()),
                _ => {}
            }
        }
        m
    }

    fn render(&self) -> String {
        let mut s = String::from("# vgpuctl install: what to restore on --uninstall\n");
        for n in &self.replaced {
            s.push_str(&format!("replaced {n}\n"));
        }
        for n in &self.created {
            s.push_str(&format!("created {n}\n"));
        }
        s
    }

    fn knows(&self, name: &str) -> bool {
        self.replaced.iter().chain(&self.created).any(|n| n == name)
    }
}

fn default_library() -> PathBuf {
    if let Some(p) = std::env::var_os("VGPU_LIBRARY") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("libvgpu.so")))
        .unwrap_or_else(|| PathBuf::from("libvgpu.so"))
}

/// The library names to (re)place in `vgpu_dir`.
fn library_targets(vgpu_dir: &Path, hami_version: Option<&str>) -> Vec<String> {
    let mut names = vec!["libvgpu.so".to_string()];
    if let Ok(rd) = fs::read_dir(vgpu_dir) {
        for e in rd.filter_map(|e| e.ok()) {
            let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            if let Ok(n) = e.file_name().into_string() {
                if is_file && n.starts_with("libvgpu.so.") {
                    names.push(n);
                }
            }
        }
    }
    if let Some(v) = hami_version {
        names.push(format!("libvgpu.so.{v}"));
    }
    names.sort();
    names.dedup();
    names
}

fn install(o: &Options) -> Result<Vec<String>, String> {
    let lib = o.library.clone().unwrap_or_else(default_library);
    let mut report = vec![check_glibc(&lib, &o.floor)?];
    let data = fs::read(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let vgpu = o.hook.join("vgpu");
    let backup = vgpu.join(BACKUP_DIR);
    fs::create_dir_all(&backup).map_err(|e| format!("cannot create {}: {e}", backup.display()))?;
    let manifest_path = backup.join(MANIFEST);
    let mut manifest = fs::read_to_string(&manifest_path)
        .map(|t| Manifest::parse(&t))
        .unwrap_or_default();

    let mut targets: Vec<(String, Vec<u8>, u32)> =
        library_targets(&vgpu, o.hami_version.as_deref())
            .into_iter()
            .map(|n| (n, data.clone(), 0o755))
            .collect();
    let preload = format!("{}/libvgpu.so\n", vgpu.display());
    targets.push((PRELOAD.to_string(), preload.into_bytes(), 0o644));

    for (name, bytes, mode) in &targets {
        let path = vgpu.join(name);
        if !manifest.knows(name) {
            // Record first, then act: an interrupted install is still undone completely.
            match fs::symlink_metadata(&path) {
                Ok(_) => {
                    let keep = backup.join(name);
                    let _ = fs::remove_file(&keep);
                    fs::hard_link(&path, &keep)
                        .or_else(|_| fs::copy(&path, &keep).map(|_| ()))
                        .map_err(|e| format!("cannot back up {}: {e}", path.display()))?;
                    manifest.replaced.push(name.clone());
                }
                Err(_) => manifest.created.push(name.clone()),
            }
            replace_atomically(&backup, MANIFEST, manifest.render().as_bytes(), 0o644)?;
        }
        replace_atomically(&vgpu, name, bytes, *mode)?;
        report.push(format!("installed {}", path.display()));
    }
    Ok(report)
}

fn uninstall(o: &Options) -> Result<Vec<String>, String> {
    let vgpu = o.hook.join("vgpu");
    let backup = vgpu.join(BACKUP_DIR);
    let text = fs::read_to_string(backup.join(MANIFEST)).map_err(|e| {
        format!(
            "nothing to uninstall: no {} ({e})",
            backup.join(MANIFEST).display()
        )
    })?;
    let m = Manifest::parse(&text);
    let mut report = Vec::new();
    for name in &m.replaced {
        let (from, to) = (backup.join(name), vgpu.join(name));
        fs::rename(&from, &to).map_err(|e| format!("cannot restore {}: {e}", to.display()))?;
        report.push(format!("restored {}", to.display()));
    }
    for name in &m.created {
        let p = vgpu.join(name);
        match fs::remove_file(&p) {
            Ok(()) => report.push(format!("removed {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
        }
    }
    sync_dir(&vgpu);
    fs::remove_file(backup.join(MANIFEST)).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir(&backup);
    Ok(report)
}

pub fn main(args: &[String]) -> Result<(), String> {
    let Some(o) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let report = if o.uninstall {
        uninstall(&o)?
    } else {
        install(&o)?
    };
    for l in report {
        println!("{l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn versions_compare_numerically() {
        let v = |x| Version::parse(x).unwrap();
        assert!(v("2.17") < v("2.34"));
        assert!(v("2.2.5") < v("2.17"));
        assert!(v("2.3.4") < v("2.12"));
        assert_eq!(v("2.17").to_string(), "2.17");
        assert!(Version::parse("2.x").is_none());
        assert!(Version::parse("").is_none());
    }

    #[test]
    fn glibc_needed_takes_the_highest_and_refuses_private() {
        let names = s(&["GCC_3.0", "GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.17"]);
        assert_eq!(glibc_needed(&names).unwrap(), Version::parse("2.34"));
        assert_eq!(glibc_needed(&s(&["GCC_3.0"])).unwrap(), None);
        assert!(glibc_needed(&s(&["GLIBC_2.2.5", "GLIBC_PRIVATE"])).is_err());
    }

    #[test]
    fn reads_the_version_references_of_this_test_binary() {
        // The test executable is a real ELF linked against this machine's glibc.
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let names = required_versions(&exe).unwrap();
        assert!(names.iter().any(|n| n == "GLIBC_2.2.5"), "{names:?}");
        assert!(required_versions(b"not an elf").is_err());
        assert!(required_versions(&exe[..64]).is_err());
    }

    #[test]
    fn parses_options() {
        let o = parse(&s(&["--hook-path", "/h", "--hami-version", "v2.6.0"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.hook, PathBuf::from("/h"));
        assert_eq!(o.hami_version.as_deref(), Some("v2.6.0"));
        assert!(!o.uninstall);
        let o = parse(&s(&["--uninstall", "--glibc-floor=2.28"]))
            .unwrap()
            .unwrap();
        assert!(o.uninstall);
        assert_eq!(o.floor, Version::parse("2.28").unwrap());
        assert_eq!(o.hook, PathBuf::from(node::DEFAULT_HOOK_PATH));
        assert!(parse(&s(&["--help"])).unwrap().is_none());
        assert!(parse(&s(&["stray"])).is_err());
        assert!(parse(&s(&["--hami-version", "../x"])).is_err());
        assert!(parse(&s(&["--glibc-floor", "two"])).is_err());
        assert!(parse(&s(&["--bogus"])).is_err());
        assert!(parse(&s(&["--hook-path", "relative/dir"])).is_err());
    }

    #[test]
    fn manifest_round_trips() {
        let m = Manifest {
            replaced: s(&["libvgpu.so", "ld.so.preload"]),
            created: s(&["libvgpu.so.v2.6.0"]),
        };
        assert_eq!(Manifest::parse(&m.render()), m);
        assert!(m.knows("ld.so.preload") && !m.knows("other"));
    }
}
