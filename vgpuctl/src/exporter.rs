//! `vgpuctl exporter [--hook-path DIR] [--listen ADDR:PORT] [--pods-dir DIR]
//! [--legacy-metrics] [--once] [FILE...]`: the node's container slices in Prometheus text
//! format at `/metrics`, under the metric names and labels of HAMi's vGPUmonitor
//! (`cmd/vGPUmonitor/metrics.go`), so dashboards built for HAMi work unchanged on nodes
//! without HAMi's monitor (Docker, Slurm) or next to it on another port.
//!
//! What HAMi's monitor exports per container and device, and so do we: `hami_vgpu_memory_used_bytes`
//! and `hami_container_device_memory_bytes` (sum of the slots' `used[i].total`),
//! `hami_vgpu_memory_limit_bytes`, `hami_vgpu_memory_{context,module,buffer}_bytes`,
//! `hami_container_device_utilization_ratio` (sum of the slots' `sm_util`),
//! `hami_container_last_kernel_elapsed_seconds` (only once a kernel ran); labels
//! `namespace, pod, container, vdevice_index, device_uuid` plus `zone="vGPU"` (HAMi registers
//! its collector under that constant label). `--legacy-metrics` adds the pre-2.5 names
//! (`vGPU_device_memory_usage_in_bytes`, ...) with their label names, as HAMi's flag does.
//! Not exported: the host-GPU metrics (`hami_host_gpu_*`, through NVML) and MIG info.
//!
//! Pod names: HAMi asks the API server; a node-local exporter reads the kubelet's log
//! directory, `/var/log/pods/<namespace>_<pod>_<uid>/` (`--pods-dir`). A slice whose pod is
//! not found there gets `pod=<uid>` and an empty namespace.
//!
//! The HTTP server is std::net: one request per connection, served in turn, with read and
//! write timeouts, so a stuck client delays a scrape by at most a few seconds and can never
//! stop the exporter.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::node::{self, DeviceRow, Slice};

/// HAMi's monitor port; loopback unless told otherwise (the metrics name pods).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9394";
/// Where the kubelet keeps `<namespace>_<pod>_<uid>` directories.
pub const DEFAULT_PODS_DIR: &str = "/var/log/pods";
/// HAMi's `WrapRegistererWith(prometheus.Labels{"zone": "vGPU"}, ...)`.
const ZONE: &str = "vGPU";

const USAGE: &str = "usage: vgpuctl exporter [--hook-path DIR] [--listen ADDR:PORT] [--pods-dir DIR] [--legacy-metrics] [--once] [FILE...]";

struct Options {
    common: node::Common,
    listen: String,
    pods_dir: PathBuf,
    legacy: bool,
    once: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut pods_dir = PathBuf::from(DEFAULT_PODS_DIR);
    let mut legacy = false;
    let mut once = false;
    let common = node::parse_common(args, |opt, rest| {
        let value = || {
            rest.first()
                .cloned()
                .ok_or_else(|| format!("{opt} needs a value\n{USAGE}"))
        };
        match opt {
            "--listen" => {
                listen = value()?;
                Ok(1)
            }
            "--pods-dir" => {
                pods_dir = PathBuf::from(value()?);
                Ok(1)
            }
            "--legacy-metrics" => {
                legacy = true;
                Ok(0)
            }
            "--once" => {
                once = true;
                Ok(0)
            }
            _ => Err(format!("unknown option {opt:?}\n{USAGE}")),
        }
    })?;
    Ok(Options {
        common,
        listen,
        pods_dir,
        legacy,
        once,
    })
}

/// Pod UID -> (namespace, pod name), from the kubelet's `<namespace>_<pod>_<uid>` log
/// directories (namespace and pod names are DNS labels/subdomains: no `_`).
pub fn pod_names(pods_dir: &Path) -> HashMap<String, (String, String)> {
    let mut map = HashMap::new();
    if let Ok(rd) = std::fs::read_dir(pods_dir) {
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let parts: Vec<&str> = name.split('_').collect();
            if let [ns, pod, uid] = parts[..] {
                if !ns.is_empty() && !pod.is_empty() && !uid.is_empty() {
                    map.insert(uid.to_string(), (ns.to_string(), pod.to_string()));
                }
            }
        }
    }
    map
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// One metric family: samples of (sorted label pairs, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, mut labels: Vec<(&'static str, String)>, value: f64) {
        labels.sort_by(|a, b| a.0.cmp(b.0));
        self.samples.push((labels, value));
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let _ = write!(out, "{}{k}=\"{}\"", if i > 0 { "," } else { "" }, escape(v));
            }
            let _ = writeln!(out, "}} {value}");
        }
    }
}

/// The identity of one container device, HAMi's five labels.
struct Ident {
    namespace: String,
    pod: String,
    container: String,
    vdevice: String,
    uuid: String,
}

impl Ident {
    fn labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("namespace", self.namespace.clone()),
            ("pod", self.pod.clone()),
            ("container", self.container.clone()),
            ("vdevice_index", self.vdevice.clone()),
            ("device_uuid", self.uuid.clone()),
            ("zone", ZONE.to_string()),
        ]
    }

    fn legacy_labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("podnamespace", self.namespace.clone()),
            ("podname", self.pod.clone()),
            ("ctrname", self.container.clone()),
            ("vdeviceid", self.vdevice.clone()),
            ("deviceuuid", self.uuid.clone()),
            ("zone", ZONE.to_string()),
        ]
    }
}

/// The `/metrics` body for `slices` at wall time `now_secs`.
pub fn render(
    slices: &[Slice],
    pods: &HashMap<String, (String, String)>,
    legacy: bool,
    now_secs: u64,
) -> String {
    let mut used = Family::new(
        "hami_vgpu_memory_used_bytes",
        "vGPU device memory usage in bytes",
    );
    let mut limit = Family::new(
        "hami_vgpu_memory_limit_bytes",
        "vGPU device memory limit in bytes",
    );
    let mut memory = Family::new(
        "hami_container_device_memory_bytes",
        "Container device memory usage in bytes",
    );
    let mut util = Family::new(
        "hami_container_device_utilization_ratio",
        "Container device SM utilization ratio",
    );
    let mut last = Family::new(
        "hami_container_last_kernel_elapsed_seconds",
        "Seconds since last kernel execution in container",
    );
    let mut context = Family::new(
        "hami_vgpu_memory_context_bytes",
        "Container device memory context size in bytes",
    );
    let mut module = Family::new(
        "hami_vgpu_memory_module_bytes",
        "Container device memory module size in bytes",
    );
    let mut buffer = Family::new(
        "hami_vgpu_memory_buffer_bytes",
        "Container device memory buffer size in bytes",
    );
    let mut l_used = Family::new("vGPU_device_memory_usage_in_bytes", "vGPU device usage");
    let mut l_limit = Family::new("vGPU_device_memory_limit_in_bytes", "vGPU device limit");
    let mut l_memory = Family::new(
        "Device_memory_desc_of_container",
        "Container device memory description",
    );
    let mut l_util = Family::new(
        "Device_utilization_desc_of_container",
        "Container device utilization description",
    );
    let mut l_last = Family::new(
        "Device_last_kernel_of_container",
        "Container device last kernel description",
    );

    for slice in slices {
        let Ok(snap) = &slice.region else { continue };
        let (namespace, pod) = match pods.get(&slice.pod_uid) {
            Some((ns, name)) => (ns.clone(), name.clone()),
            None => (String::new(), slice.pod_uid.clone()),
        };
        for row in node::device_rows(snap) {
            let DeviceRow {
                index,
                uuid,
                limit: lim,
                total,
                context: ctx,
                module: m,
                data,
                sm_util,
                ..
            } = row;
            // HAMi labels the first 40 bytes of the UUID buffer (`GPU-` + 36).
            let uuid: String = uuid.chars().take(40).collect();
            if uuid.is_empty() {
                continue;
            }
            let id = Ident {
                namespace: namespace.clone(),
                pod: pod.clone(),
                container: slice.container.clone(),
                vdevice: index.to_string(),
                uuid,
            };
            let labels = id.labels();
            used.add(labels.clone(), total as f64);
            limit.add(labels.clone(), lim as f64);
            memory.add(labels.clone(), total as f64);
            util.add(labels.clone(), sm_util as f64);
            context.add(labels.clone(), ctx as f64);
            module.add(labels.clone(), m as f64);
            buffer.add(labels.clone(), data as f64);
            let elapsed = (snap.last_kernel_time > 0)
                .then(|| now_secs.saturating_sub(snap.last_kernel_time) as f64);
            if let Some(e) = elapsed {
                last.add(labels, e);
            }
            if legacy {
                let ll = id.legacy_labels();
                l_used.add(ll.clone(), total as f64);
                l_limit.add(ll.clone(), lim as f64);
                let offset = total.wrapping_sub(ctx).wrapping_sub(m).wrapping_sub(data);
                let mut ml = ll.clone();
                ml.extend([
                    ("context", ctx.to_string()),
                    ("module", m.to_string()),
                    ("data", data.to_string()),
                    ("offset", offset.to_string()),
                ]);
                l_memory.add(ml, total as f64);
                l_util.add(ll.clone(), sm_util as f64);
                if let Some(e) = elapsed {
                    l_last.add(ll, e);
                }
            }
        }
    }
    let mut out = String::new();
    for f in [
        &used, &limit, &memory, &util, &last, &context, &module, &buffer, &l_used, &l_limit,
        &l_memory, &l_util, &l_last,
    ] {
        f.write(&mut out);
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn scrape(o: &Options) -> String {
    let slices = node::scan(&o.common.hook, &o.common.files);
    render(&slices, &pod_names(&o.pods_dir), o.legacy, now_secs())
}

/// What to answer to one request head (`GET /metrics HTTP/1.1 ...`): (status line, body).
fn route(head: &str, metrics: impl FnOnce() -> String) -> (&'static str, String) {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", metrics()),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "vgpuctl exporter: HAMi vGPUmonitor metrics at /metrics\n".to_string(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    }
}

fn serve_one(mut conn: TcpStream, o: &Options) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let (status, body) = route(&head, || scrape(o));
    let is_head = head.starts_with("HEAD ");
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !is_head {
        resp.push_str(&body);
    }
    conn.write_all(resp.as_bytes())?;
    conn.flush()
}

pub fn main(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if o.once {
        print!("{}", scrape(&o));
        return Ok(());
    }
    let listener =
        TcpListener::bind(&o.listen).map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // On stdout, so a supervisor (or a test, with --listen 127.0.0.1:0) learns the port.
    println!(
        "vgpuctl exporter: serving http://{addr}/metrics for {}",
        node::containers_dir(&o.common.hook).display()
    );
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                if let Err(e) = serve_one(c, &o) {
                    eprintln!("vgpuctl exporter: request failed: {e}");
                }
            }
            Err(e) => {
                eprintln!("vgpuctl exporter: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Device, Process, Snapshot};
    use shm_layout::SlotUsage;

    fn slice(uid: &str, ctr: &str, last_kernel: u64) -> Slice {
        let usage = |ctx, m, d| SlotUsage {
            context_size: ctx,
            module_size: m,
            data_size: d,
        };
        Slice {
            pod_uid: uid.into(),
            container: ctr.into(),
            path: PathBuf::from("/x.cache"),
            region: Ok(Snapshot {
                recent_kernel: 2,
                utilization_switch: 1,
                priority: 1,
                last_kernel_time: last_kernel,
                devices: vec![Device {
                    index: 0,
                    uuid: "GPU-12345678-1234-1234-1234-123456789abc".into(),
                    limit: 1 << 30,
                    sm_limit: 30,
                    used: 0,
                    peak: 0,
                }],
                processes: vec![
                    Process {
                        slot: 0,
                        pid: 10,
                        hostpid: 1010,
                        alive: true,
                        usage: vec![(0, usage(64, 2, 100), 12)],
                    },
                    Process {
                        slot: 1,
                        pid: 11,
                        hostpid: 0,
                        alive: false,
                        usage: vec![(0, usage(64, 0, 50), 5)],
                    },
                ],
            }),
        }
    }

    #[test]
    fn renders_hamis_families_with_summed_slots_and_sorted_labels() {
        let mut pods = HashMap::new();
        pods.insert(
            "uid-1".to_string(),
            ("ml".to_string(), "trainer-0".to_string()),
        );
        let text = render(&[slice("uid-1", "main", 1000)], &pods, false, 1007);
        let labels = "container=\"main\",device_uuid=\"GPU-12345678-1234-1234-1234-123456789abc\",namespace=\"ml\",pod=\"trainer-0\",vdevice_index=\"0\",zone=\"vGPU\"";
        for (name, value) in [
            ("hami_vgpu_memory_used_bytes", 280),
            ("hami_container_device_memory_bytes", 280),
            ("hami_vgpu_memory_limit_bytes", 1 << 30),
            ("hami_vgpu_memory_context_bytes", 128),
            ("hami_vgpu_memory_module_bytes", 2),
            ("hami_vgpu_memory_buffer_bytes", 150),
            ("hami_container_device_utilization_ratio", 17),
            ("hami_container_last_kernel_elapsed_seconds", 7),
        ] {
            let line = format!("{name}{{{labels}}} {value}\n");
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
            assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{text}");
        }
        assert!(
            !text.contains("vGPU_device_memory"),
            "legacy names only on request"
        );
    }

    #[test]
    fn legacy_names_and_unknown_pods_and_no_kernel_yet() {
        let text = render(&[slice("uid-2", "side", 0)], &HashMap::new(), true, 5);
        assert!(
            text.contains("vGPU_device_memory_usage_in_bytes{ctrname=\"side\",deviceuuid=\"GPU-12345678-1234-1234-1234-123456789abc\",podname=\"uid-2\",podnamespace=\"\",vdeviceid=\"0\",zone=\"vGPU\"} 280\n"),
            "{text}"
        );
        assert!(
            text.contains("Device_memory_desc_of_container{context=\"128\",ctrname=\"side\",data=\"150\",deviceuuid=\"GPU-12345678-1234-1234-1234-123456789abc\",module=\"2\",offset=\"0\","),
            "{text}"
        );
        assert!(!text.contains("last_kernel"), "no kernel yet: {text}");
        assert!(!text.contains("Device_last_kernel"), "{text}");
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn routes_requests() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\n", || "m".into()).1, "m");
        assert_eq!(
            route("GET /metrics?x=1 HTTP/1.1\r\n", || "m".into()).0,
            "200 OK"
        );
        assert_eq!(
            route("GET /nope HTTP/1.1\r\n", || "m".into()).0,
            "404 Not Found"
        );
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n", || "m".into()).0,
            "405 Method Not Allowed"
        );
    }

    #[test]
    fn reads_pod_names_from_the_kubelet_log_directories() {
        let dir = std::env::temp_dir().join(format!("vgpuctl-pods-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("default_web-1_0a0b")).unwrap();
        std::fs::create_dir_all(dir.join("junk")).unwrap();
        let m = pod_names(&dir);
        assert_eq!(m.get("0a0b"), Some(&("default".into(), "web-1".into())));
        assert_eq!(m.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
