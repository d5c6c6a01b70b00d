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
//! Per physical GPU, through NVML (as HAMi's monitor, which needs `NODE_NAME`; we fall back
//! to the host name): `hami_host_gpu_memory_used_bytes`, `hami_host_gpu_utilization_ratio`
//! (`node, device_index, device_uuid, device_type="NVIDIA-<name>"`),
//! `hami_host_gpu_memory_controller_utilization_ratio` (without `node`), and the legacy
//! `HostGPUMemoryUsage`/`HostCoreUtilization`. Without NVML these are left out (one line on
//! stderr). Not exported: MIG info (it comes from pod annotations) and `hami_build_info`
//! (HAMi's own build).
//!
//! Pod names: HAMi asks the API server; a node-local exporter reads the kubelet's log
//! directory, `/var/log/pods/<namespace>_<pod>_<uid>/` (`--pods-dir`). A slice whose pod is
//! not found there gets `pod=<uid>` and an empty namespace.
//!
//! The HTTP server is std::net: one request per connection, each on its own thread (at most
//! [`MAX_CONNECTIONS`] at once; more are closed at once), and each connection has
//! [`REQUEST_DEADLINE`] for all of it (head read and answer written), so a stuck or trickling
//! client neither delays a scrape nor keeps a thread for long.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node::{self, DeviceRow, Slice};

/// HAMi's monitor port; loopback unless told otherwise (the metrics name pods).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9394";
/// Where the kubelet keeps `<namespace>_<pod>_<uid>` directories.
pub const DEFAULT_PODS_DIR: &str = "/var/log/pods";
/// HAMi's `WrapRegistererWith(prometheus.Labels{"zone": "vGPU"}, ...)`.
const ZONE: &str = "vGPU";
/// Requests served at the same time.
pub const MAX_CONNECTIONS: usize = 16;

const USAGE: &str = "usage: vgpuctl exporter [--hook-path DIR] [--listen ADDR:PORT] [--pods-dir DIR] [--legacy-metrics] [--once] [FILE...]";

struct Options {
    common: node::Common,
    listen: String,
    pods_dir: PathBuf,
    legacy: bool,
    once: bool,
    /// The real NVML, for the host-GPU metrics (None: left out).
    nvml: Option<Nvml>,
    node: String,
}

/// The options, or `None` for `--help`.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let (mut listen, mut pods_dir) = (None, None);
    let (mut legacy, mut once) = (false, false);
    let Some(common) = node::parse_options(
        args,
        USAGE,
        &mut [
            node::Opt::Value("--listen", &mut listen),
            node::Opt::Value("--pods-dir", &mut pods_dir),
            node::Opt::Flag("--legacy-metrics", &mut legacy),
            node::Opt::Flag("--once", &mut once),
        ],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Options {
        common,
        listen: listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        pods_dir: PathBuf::from(pods_dir.as_deref().unwrap_or(DEFAULT_PODS_DIR)),
        legacy,
        once,
        nvml: None,
        node: String::new(),
    }))
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

// ---- host GPUs through NVML ---------------------------------------------------------------

/// One physical GPU as NVML reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostGpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_used: u64,
    /// `nvmlUtilization_t.gpu` and `.memory`, percent; None when NVML refuses.
    pub util: Option<(u32, u32)>,
}

/// The real NVML's entry points the host metrics need (resolved once; the library stays
/// loaded for the exporter's lifetime).
#[derive(Clone, Copy)]
struct Nvml {
    count: cuda_headers::pfn::nvmlDeviceGetCount_v2,
    by_index: cuda_headers::pfn::nvmlDeviceGetHandleByIndex_v2,
    uuid: cuda_headers::pfn::nvmlDeviceGetUUID,
    name: cuda_headers::pfn::nvmlDeviceGetName,
    memory: cuda_headers::pfn::nvmlDeviceGetMemoryInfo,
    util: cuda_headers::pfn::nvmlDeviceGetUtilizationRates,
}

impl Nvml {
    fn load() -> Result<Nvml, String> {
        use crate::smi::sym;
        // SAFETY: loading NVML; the handle is never closed (kept for the process lifetime).
        let lib = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW) };
        if lib.is_null() {
            return Err("cannot load libnvidia-ml.so.1".into());
        }
        // SAFETY: `lib` is the handle just opened; each type is its name's `pfn` type, and
        // nvmlInit_v2 takes no arguments.
        unsafe {
            let init: cuda_headers::pfn::nvmlInit_v2 = sym(lib, c"nvmlInit_v2")?;
            let rc = init();
            if rc != cuda_headers::bindings::NVML_SUCCESS {
                return Err(format!("nvmlInit_v2 failed ({rc})"));
            }
            Ok(Nvml {
                count: sym(lib, c"nvmlDeviceGetCount_v2")?,
                by_index: sym(lib, c"nvmlDeviceGetHandleByIndex_v2")?,
                uuid: sym(lib, c"nvmlDeviceGetUUID")?,
                name: sym(lib, c"nvmlDeviceGetName")?,
                memory: sym(lib, c"nvmlDeviceGetMemoryInfo")?,
                util: sym(lib, c"nvmlDeviceGetUtilizationRates")?,
            })
        }
    }

    /// Every GPU that answers (a device that fails one query is left out, as HAMi does).
    fn gpus(&self) -> Vec<HostGpu> {
        use cuda_headers::bindings::*;
        let text = |b: &[std::ffi::c_char]| {
            // SAFETY: zero-initialised buffer; NVML NUL-terminates within it.
            unsafe { std::ffi::CStr::from_ptr(b.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        let mut out = Vec::new();
        let mut n: std::ffi::c_uint = 0;
        // SAFETY: plain NVML queries with valid out-pointers and buffer lengths.
        unsafe {
            if (self.count)(&mut n) != NVML_SUCCESS {
                return out;
            }
            for i in 0..n {
                let mut dev: nvmlDevice_t = std::ptr::null_mut();
                if (self.by_index)(i, &mut dev) != NVML_SUCCESS {
                    continue;
                }
                let mut m = nvmlMemory_t::default();
                let mut uuid = [0 as std::ffi::c_char; 96];
                let mut name = [0 as std::ffi::c_char; 96];
                if (self.memory)(dev, &mut m) != NVML_SUCCESS
                    || (self.uuid)(dev, uuid.as_mut_ptr(), 96) != NVML_SUCCESS
                    || (self.name)(dev, name.as_mut_ptr(), 96) != NVML_SUCCESS
                {
                    continue;
                }
                let mut u = nvmlUtilization_t::default();
                let util = ((self.util)(dev, &mut u) == NVML_SUCCESS).then_some((u.gpu, u.memory));
                out.push(HostGpu {
                    index: i,
                    uuid: text(&uuid),
                    name: text(&name),
                    memory_used: m.used,
                    util,
                });
            }
        }
        out
    }
}

/// The node's name for the host metrics: `NODE_NAME` (what HAMi's chart sets), else the
/// host name.
fn node_name() -> String {
    if let Some(n) = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()) {
        return n;
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    String::new()
}

/// The host-GPU families (HAMi's `collectGPUInfo`).
pub fn render_host(gpus: &[HostGpu], node: &str, legacy: bool) -> String {
    let mut used = Family::new(
        "hami_host_gpu_memory_used_bytes",
        "GPU device memory usage in bytes",
    );
    let mut util = Family::new(
        "hami_host_gpu_utilization_ratio",
        "GPU core utilization ratio (0-100)",
    );
    let mut mem_util = Family::new(
        "hami_host_gpu_memory_controller_utilization_ratio",
        "GPU memory controller utilization ratio (0-100)",
    );
    let mut l_used = Family::new("HostGPUMemoryUsage", "GPU device memory usage");
    let mut l_util = Family::new("HostCoreUtilization", "GPU core utilization");
    for g in gpus {
        let ty = format!("NVIDIA-{}", g.name);
        let labels = vec![
            ("node", node.to_string()),
            ("device_index", g.index.to_string()),
            ("device_uuid", g.uuid.clone()),
            ("device_type", ty.clone()),
            ("zone", ZONE.to_string()),
        ];
        let legacy_labels = vec![
            ("nodeid", node.to_string()),
            ("deviceidx", g.index.to_string()),
            ("deviceuuid", g.uuid.clone()),
            ("devicetype", ty.clone()),
            ("zone", ZONE.to_string()),
        ];
        used.add(labels.clone(), g.memory_used as f64);
        if legacy {
            l_used.add(legacy_labels.clone(), g.memory_used as f64);
        }
        if let Some((gpu, memory)) = g.util {
            util.add(labels, f64::from(gpu));
            if legacy {
                l_util.add(legacy_labels, f64::from(gpu));
            }
            mem_util.add(
                vec![
                    ("device_index", g.index.to_string()),
                    ("device_uuid", g.uuid.clone()),
                    ("device_type", ty),
                    ("zone", ZONE.to_string()),
                ],
                f64::from(memory),
            );
        }
    }
    let mut out = String::new();
    for f in [&used, &util, &mem_util, &l_used, &l_util] {
        f.write(&mut out);
    }
    out
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

fn scrape(o: &Options) -> String {
    let mut text = o
        .nvml
        .map(|n| render_host(&n.gpus(), &o.node, o.legacy))
        .unwrap_or_default();
    let slices = node::scan(&o.common.hook, &o.common.files);
    text.push_str(&render(
        &slices,
        &pod_names(&o.pods_dir),
        o.legacy,
        node::now_secs(),
    ));
    text
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

/// How long one connection may take, all of it: its request head and our answer. Prometheus
/// sends its head in one packet and reads at once; a client that trickles bytes (one every few
/// seconds keeps a per-read timeout happy forever) would otherwise hold one of the
/// [`MAX_CONNECTIONS`] threads for hours, and [`MAX_CONNECTIONS`] such clients every scrape.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} took too long"),
    )
}

/// Time left until `deadline`, as a socket timeout (never zero: zero means none).
fn left(deadline: Instant, what: &str) -> std::io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(timed_out(what));
    }
    Ok(d)
}

/// Reads a request head (up to the blank line, or [`MAX_HEAD`] bytes, or the client's end)
/// before `deadline`.
fn read_head(conn: &mut TcpStream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        conn.set_read_timeout(Some(left(deadline, "request")?))?;
        let n = match conn.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out("request"))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// Writes all of `data` before `deadline` (a client reading a byte at a time is cut off).
fn write_before(conn: &mut TcpStream, mut data: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !data.is_empty() {
        conn.set_write_timeout(Some(left(deadline, "answer")?))?;
        match conn.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out("answer"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Answers one connection within `limit`, all of it.
fn serve_one(
    mut conn: TcpStream,
    limit: Duration,
    metrics: impl FnOnce() -> String,
) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    let head = read_head(&mut conn, deadline)?;
    let head = String::from_utf8_lossy(&head);
    let (status, body) = route(&head, metrics);
    let is_head = head.starts_with("HEAD ");
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !is_head {
        resp.push_str(&body);
    }
    write_before(&mut conn, resp.as_bytes(), deadline)
}

pub fn main(args: &[String]) -> Result<(), String> {
    let Some(mut o) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    match Nvml::load() {
        Ok(n) => o.nvml = Some(n),
        Err(e) => eprintln!("vgpuctl exporter: no host GPU metrics: {e}"),
    }
    o.node = node_name();
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
    let o = Arc::new(o);
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let c = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("vgpuctl exporter: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::AcqRel);
            drop(c);
            continue;
        }
        let (o, done) = (Arc::clone(&o), Arc::clone(&busy));
        let spawned = std::thread::Builder::new()
            .name("vgpu-exporter".into())
            .spawn(move || {
                if let Err(e) = serve_one(c, REQUEST_DEADLINE, || scrape(&o)) {
                    eprintln!("vgpuctl exporter: request failed: {e}");
                }
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
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
                    refused: false,
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
    fn renders_the_host_gpu_families() {
        let g = HostGpu {
            index: 1,
            uuid: "GPU-aa".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_used: 4096,
            util: Some((42, 7)),
        };
        let text = render_host(std::slice::from_ref(&g), "node-1", true);
        for line in [
            "hami_host_gpu_memory_used_bytes{device_index=\"1\",device_type=\"NVIDIA-NVIDIA H100 80GB HBM3\",device_uuid=\"GPU-aa\",node=\"node-1\",zone=\"vGPU\"} 4096\n",
            "hami_host_gpu_utilization_ratio{device_index=\"1\",device_type=\"NVIDIA-NVIDIA H100 80GB HBM3\",device_uuid=\"GPU-aa\",node=\"node-1\",zone=\"vGPU\"} 42\n",
            "hami_host_gpu_memory_controller_utilization_ratio{device_index=\"1\",device_type=\"NVIDIA-NVIDIA H100 80GB HBM3\",device_uuid=\"GPU-aa\",zone=\"vGPU\"} 7\n",
            "HostGPUMemoryUsage{deviceidx=\"1\",devicetype=\"NVIDIA-NVIDIA H100 80GB HBM3\",deviceuuid=\"GPU-aa\",nodeid=\"node-1\",zone=\"vGPU\"} 4096\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let no_util = HostGpu { util: None, ..g };
        let text = render_host(&[no_util], "n", false);
        assert!(text.contains("hami_host_gpu_memory_used_bytes"), "{text}");
        assert!(
            !text.contains("utilization") && !text.contains("HostGPU"),
            "{text}"
        );
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

    /// A connected pair: (our side, the client's).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap().0, client)
    }

    #[test]
    fn answers_a_request_and_closes() {
        let (conn, mut client) = pair();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        serve_one(conn, Duration::from_secs(5), || "m 1\n".into()).unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("Content-Length: 4\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nm 1\n"), "{got}");
    }

    #[test]
    fn a_trickling_client_is_cut_off_at_the_deadline() {
        let (conn, mut client) = pair();
        // One byte every 50 ms for 3 s, never the blank line: each read is quick, the whole is not.
        let trickle = std::thread::spawn(move || {
            for &b in
                b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
            {
                if client.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let t = Instant::now();
        let e = serve_one(conn, Duration::from_millis(300), || unreachable!()).unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(took < Duration::from_secs(2), "held for {took:?}");
        trickle.join().unwrap();
    }

    #[test]
    fn a_client_that_does_not_read_is_cut_off_at_the_deadline() {
        let (conn, mut client) = pair();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        // Far more than the socket buffers hold, and the client never reads.
        let body = "x".repeat(32 << 20);
        let t = Instant::now();
        let e = serve_one(conn, Duration::from_millis(300), || body).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "held for {:?}",
            t.elapsed()
        );
        drop(client);
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
