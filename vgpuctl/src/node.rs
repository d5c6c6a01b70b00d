//! The node's container slices, as HAMi's device plugin lays them out on the host:
//! `<hook path>/vgpu/containers/<pod-uid>_<container>/<uuid>.cache` (the directory is the
//! container's `<hook path>/vgpu`, its region file the container's
//! `CUDA_DEVICE_MEMORY_SHARED_CACHE`). Shared by `top` and `exporter`; regions are read by
//! [`crate::inspect::read`], the one reader.

use std::path::{Path, PathBuf};

use crate::inspect::{self, Snapshot};

/// Usage of the node commands (`top`, `exporter`, `install`).
pub const USAGE: &str = "\
  vgpuctl top [--hook-path DIR] [--once] [--json] [FILE...]
      Live view of every container slice on the node (HAMi's <DIR>/vgpu/containers/*/
      *.cache, DIR default /usr/local, and the FILEs): limit, used, SM limit and share,
      processes, last kernel, priority, hold. Keys: m l u n k p sort, r reverse, q quit.
  vgpuctl exporter [--hook-path DIR] [--listen ADDR:PORT] [--pods-dir DIR] [--legacy-metrics]
      Prometheus metrics of those slices at http://ADDR:PORT/metrics (default
      127.0.0.1:9394) under HAMi vGPUmonitor's names and labels.
  vgpuctl install [--hook-path DIR] [--library PATH] [--hami-version V] [--glibc-floor X.Y]
  vgpuctl install --uninstall [--hook-path DIR]
      Put libvgpu.so where HAMi's device plugin mounts it from (<DIR>/vgpu), atomically,
      and write <DIR>/vgpu/ld.so.preload; --uninstall restores what was there.";

/// Arguments as UTF-8 (the node commands take paths and options, never raw bytes).
pub fn strings(args: &[std::ffi::OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// Unix seconds now (0 before 1970), the clock of a region's `last_kernel_time`.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// HAMi's default hook path (`global.gpuHookPath` in its Helm values, `HOOK_PATH`).
pub const DEFAULT_HOOK_PATH: &str = "/usr/local";

/// One container slice found on the node.
#[derive(Debug)]
pub struct Slice {
    /// Pod UID from the directory name; empty for a region file named on the command line.
    pub pod_uid: String,
    /// Container name from the directory name; the file's path for a named file.
    pub container: String,
    pub path: PathBuf,
    pub region: Result<Snapshot, String>,
}

/// One device of one slice, summed over its process slots the way HAMi's monitor sums them
/// (every slot with `status != 0`, stale ones included until the reaper frees them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceRow {
    pub index: usize,
    pub uuid: String,
    /// Memory cap in bytes, 0 = none.
    pub limit: u64,
    /// Compute cap in percent, 0 = none.
    pub sm_limit: u64,
    pub total: u64,
    pub context: u64,
    pub module: u64,
    pub data: u64,
    /// Sum of the processes' published SM utilization, percent of the device.
    pub sm_util: u64,
    /// Processes holding memory on the device: (host pid, or the container pid while the
    /// host pid is unknown; alive).
    pub pids: Vec<(i32, bool)>,
}

/// The per-device rows of one region.
pub fn device_rows(s: &Snapshot) -> Vec<DeviceRow> {
    s.devices
        .iter()
        .map(|d| {
            let mut row = DeviceRow {
                index: d.index,
                uuid: d.uuid.clone(),
                limit: d.limit,
                sm_limit: d.sm_limit,
                ..DeviceRow::default()
            };
            for p in &s.processes {
                for (dev, u, util) in &p.usage {
                    if *dev != d.index {
                        continue;
                    }
                    row.context = row.context.saturating_add(u.context_size);
                    row.module = row.module.saturating_add(u.module_size);
                    row.data = row.data.saturating_add(u.data_size);
                    row.total = row.total.saturating_add(u.total());
                    row.sm_util = row.sm_util.saturating_add(*util);
                    if u.total() > 0 {
                        let pid = if p.hostpid > 0 { p.hostpid } else { p.pid };
                        row.pids.push((pid, p.alive));
                    }
                }
            }
            row
        })
        .collect()
}

/// `<hook>/vgpu/containers`.
pub fn containers_dir(hook: &Path) -> PathBuf {
    hook.join("vgpu").join("containers")
}

/// Splits a container directory name `<pod-uid>_<container>` as HAMi's monitor does (at the
/// first `_`; both parts non-empty).
pub fn split_dir_name(name: &str) -> Option<(&str, &str)> {
    let (uid, ctr) = name.split_once('_')?;
    (!uid.is_empty() && !ctr.is_empty()).then_some((uid, ctr))
}

/// The region file of one container directory: the first `*.cache` by name (HAMi's monitor
/// takes the first `.cache` that is not a `libvgpu.so*`); `None` before the container's
/// first CUDA call creates it.
pub fn region_file(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".cache") && !n.contains("libvgpu.so"))
        .collect();
    names.sort();
    names.first().map(|n| dir.join(n))
}

/// Every slice under `hook` (sorted by directory name) followed by the named `files`.
pub fn scan(hook: &Path, files: &[PathBuf]) -> Vec<Slice> {
    let mut out = Vec::new();
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(containers_dir(hook))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    for (name, dir) in dirs {
        let Some((uid, ctr)) = split_dir_name(&name) else {
            continue;
        };
        let Some(path) = region_file(&dir) else {
            continue;
        };
        out.push(Slice {
            pod_uid: uid.to_string(),
            container: ctr.to_string(),
            region: inspect::read(&path.to_string_lossy()),
            path,
        });
    }
    for f in files {
        out.push(Slice {
            pod_uid: String::new(),
            container: f.display().to_string(),
            region: inspect::read(&f.to_string_lossy()),
            path: f.clone(),
        });
    }
    out
}

/// Options shared by `top`, `exporter` and `install`: `--hook-path DIR` and region files.
#[derive(Debug, PartialEq)]
pub struct Common {
    pub hook: PathBuf,
    pub files: Vec<PathBuf>,
}

/// One option of a node command besides `--hook-path`.
pub enum Opt<'a> {
    /// `--name`: sets the flag.
    Flag(&'static str, &'a mut bool),
    /// `--name VALUE` or `--name=VALUE`.
    Value(&'static str, &'a mut Option<String>),
}

/// Parses a node command's `args`: `--hook-path DIR`, the command's own `opts`, and region
/// files (every other argument). `Ok(None)`: `-h`/`--help` was asked for. Errors end in `usage`.
pub fn parse_options(
    args: &[String],
    usage: &str,
    opts: &mut [Opt<'_>],
) -> Result<Option<Common>, String> {
    let mut hook = None;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "-h" || a == "--help" {
            return Ok(None);
        }
        if !a.starts_with('-') || a == "-" {
            files.push(PathBuf::from(a));
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a, None),
        };
        let take_value = |i: &mut usize| match &inline {
            Some(v) => Ok(v.clone()),
            None => {
                let v = args
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value\n{usage}"))?;
                *i += 1;
                Ok::<String, String>(v)
            }
        };
        if name == "--hook-path" {
            hook = Some(PathBuf::from(take_value(&mut i)?));
            continue;
        }
        match opts.iter_mut().find(|o| match o {
            Opt::Flag(n, _) | Opt::Value(n, _) => *n == name,
        }) {
            Some(Opt::Flag(_, f)) if inline.is_none() => **f = true,
            Some(Opt::Flag(..)) => return Err(format!("{name} takes no value\n{usage}")),
            Some(Opt::Value(_, v)) => **v = Some(take_value(&mut i)?),
            None => return Err(format!("unknown option {a:?}\n{usage}")),
        }
    }
    Ok(Some(Common {
        hook: hook.unwrap_or_else(|| PathBuf::from(DEFAULT_HOOK_PATH)),
        files,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_directory_names_like_hamis_monitor() {
        assert_eq!(split_dir_name("0a1b-uid_main"), Some(("0a1b-uid", "main")));
        assert_eq!(split_dir_name("uid_side_car"), Some(("uid", "side_car")));
        assert_eq!(split_dir_name("nounderscore"), None);
        assert_eq!(split_dir_name("_ctr"), None);
        assert_eq!(split_dir_name("uid_"), None);
    }

    #[test]
    fn parses_hook_path_flags_values_and_files() {
        let args = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        let (mut once, mut listen) = (false, None);
        let c = parse_options(
            &args(&[
                "--hook-path",
                "/h",
                "a.cache",
                "--once",
                "--listen=1.2.3.4:5",
                "b.cache",
            ]),
            "U",
            &mut [
                Opt::Flag("--once", &mut once),
                Opt::Value("--listen", &mut listen),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.hook, PathBuf::from("/h"));
        assert_eq!(
            c.files,
            vec![PathBuf::from("a.cache"), PathBuf::from("b.cache")]
        );
        assert!(once);
        assert_eq!(listen.as_deref(), Some("1.2.3.4:5"));

        let mut listen = None;
        let c = parse_options(
            &args(&["--hook-path=/k", "--listen", "x:1"]),
            "U",
            &mut [Opt::Value("--listen", &mut listen)],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.hook, PathBuf::from("/k"));
        assert!(c.files.is_empty());
        assert_eq!(listen.as_deref(), Some("x:1"));
        assert_eq!(
            parse_options(&args(&[]), "U", &mut [])
                .unwrap()
                .unwrap()
                .hook,
            PathBuf::from(DEFAULT_HOOK_PATH)
        );

        // Help wins wherever it stands; everything else odd is an error that ends in usage.
        assert_eq!(
            parse_options(&args(&["x", "--help"]), "U", &mut []),
            Ok(None)
        );
        assert_eq!(
            parse_options(&args(&["-h", "--frob"]), "U", &mut []),
            Ok(None)
        );
        let mut f = false;
        for bad in [
            &["--frob"][..],
            &["--hook-path"],
            &["--once=yes"],
            &["--listen"],
        ] {
            let mut v = None;
            let e = parse_options(
                &args(bad),
                "U",
                &mut [Opt::Flag("--once", &mut f), Opt::Value("--listen", &mut v)],
            )
            .unwrap_err();
            assert!(e.ends_with("\nU"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn region_file_is_the_first_cache_by_name() {
        let dir = std::env::temp_dir().join(format!("vgpuctl-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(region_file(&dir), None);
        for n in ["libvgpu.so", "b.cache", "a.cache", "notes.txt"] {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
        assert_eq!(region_file(&dir), Some(dir.join("a.cache")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
