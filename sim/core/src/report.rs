//! Ground truth of the simulated GPU as a text table or JSON (`vgpu-sim status`, `vgpuctl sim`).

use crate::alloc::kind;
use crate::state::{default_state_path, OpenError, SimState, Snapshot};
use std::fmt::Write;
use std::path::Path;

/// Renders the state at `state_path` (default: [`default_state_path`]) as a text table, or as
/// JSON when `json` is set. Errors are one-line messages (no state file, foreign file, ...).
pub fn status_report(state_path: Option<&Path>, json: bool) -> Result<String, String> {
    let path = state_path
        .map(Path::to_path_buf)
        .unwrap_or_else(default_state_path);
    let st = match SimState::open_existing(&path) {
        Ok(s) => s,
        Err(OpenError::Missing) => {
            return Err(format!(
                "no simulated GPU state at {} (no process has used the simulator yet)",
                path.display()
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    let snap = st.lock()?.snapshot(crate::clock::mono_ns());
    Ok(if json {
        render_json(&snap)
    } else {
        render_text(&snap)
    })
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 20) as f64)
}

/// Text table of a snapshot.
/// The UUID as the device's own tools print it: ROCr's `GPU-<16 hex>` for AMD models,
/// nvidia-smi's form otherwise.
fn shown_uuid(info: &crate::state::DeviceInfo) -> String {
    match crate::amd::amd_spec(&info.model_key) {
        Some(_) => crate::amd::rocr_uuid(&info.uuid),
        None => info.uuid_str.clone(),
    }
}

pub fn render_text(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "vgpu-sim state {} (layout v{}, created by pid {}, {} live allocations)",
        s.path.display(),
        s.version,
        s.creator_pid,
        s.allocations
    );
    let _ = writeln!(
        o,
        "{:<4} {:<24} {:<40} {:<17} {:>10} {:>10} {:>5} {:>12} {:>9}",
        "DEV", "NAME", "UUID", "PCI BUS ID", "USED MiB", "TOTAL MiB", "UTIL", "BUSY s", "KERNELS"
    );
    for d in &s.devices {
        let _ = writeln!(
            o,
            "{:<4} {:<24} {:<40} {:<17} {:>10} {:>10} {:>4}% {:>12.6} {:>9}",
            d.info.index,
            d.info.name,
            shown_uuid(&d.info),
            d.info.pci_bus_id,
            mib(d.used),
            mib(d.info.total_mem),
            d.util_1s,
            d.busy_total_ns as f64 / 1e9,
            d.kernels
        );
    }
    let _ = writeln!(o);
    for g in &s.groups {
        let per_dev = |v: &[u64]| v.iter().map(|b| mib(*b)).collect::<Vec<_>>().join("/");
        let _ = writeln!(
            o,
            "group {:?}: {} processes, MiB now {} (by device), high-water {}",
            g.name,
            g.members,
            per_dev(&g.used),
            per_dev(&g.high_water)
        );
    }
    if s.procs.is_empty() {
        let _ = writeln!(o, "no processes");
        return o;
    }
    let _ = writeln!(
        o,
        "{:<8} {:<16} {:<6} {:<4} {:>9} {:>9} {:>10} {:>10} {:>11} {:>9} {:>7}  DATA BY KIND (MiB)",
        "PID",
        "NAME",
        "STATE",
        "DEV",
        "CTX MiB",
        "MOD MiB",
        "DATA MiB",
        "TOTAL MiB",
        "BUSY ms",
        "KERNELS",
        "ALLOCS"
    );
    for p in &s.procs {
        let state = if p.alive { "alive" } else { "dead" };
        if p.devices.is_empty() {
            let _ = writeln!(o, "{:<8} {:<16} {:<6} -", p.pid, p.comm, state);
        }
        for (d, u, by_kind, count) in &p.devices {
            let kinds: Vec<String> = kind::ALL
                .iter()
                .zip(by_kind.iter())
                .filter(|(_, b)| **b > 0)
                .map(|(k, b)| format!("{}={}", kind::name(*k), mib(*b)))
                .collect();
            let _ = writeln!(
                o,
                "{:<8} {:<16} {:<6} {:<4} {:>9} {:>9} {:>10} {:>10} {:>11.3} {:>9} {:>7}  {}",
                p.pid,
                p.comm,
                state,
                d,
                mib(u.ctx_bytes),
                mib(u.module_bytes),
                mib(u.data_bytes),
                mib(u.total()),
                u.busy_ns as f64 / 1e6,
                u.kernels,
                count,
                kinds.join(" ")
            );
        }
    }
    o
}

/// Escapes a string as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// JSON of a snapshot (one object, no trailing newline).
pub fn render_json(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"path\":{},\"version\":{},\"creator_pid\":{},\"allocations\":{},\"devices\":[",
        json_str(&s.path.display().to_string()),
        s.version,
        s.creator_pid,
        s.allocations
    );
    for (i, d) in s.devices.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"index\":{},\"name\":{},\"uuid\":{},\"pci_bus_id\":{},\"total_bytes\":{},\"used_bytes\":{},\"free_bytes\":{},\"busy_ns\":{},\"kernels\":{},\"utilization_1s\":{}}}",
            d.info.index,
            json_str(&d.info.name),
            json_str(&shown_uuid(&d.info)),
            json_str(&d.info.pci_bus_id),
            d.info.total_mem,
            d.used,
            d.info.total_mem.saturating_sub(d.used),
            d.busy_total_ns,
            d.kernels,
            d.util_1s
        );
    }
    o.push_str("],\"processes\":[");
    for (i, p) in s.procs.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"pid\":{},\"name\":{},\"alive\":{},\"devices\":[",
            p.pid,
            json_str(&p.comm),
            p.alive
        );
        for (j, (d, u, by_kind, count)) in p.devices.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let kinds: Vec<String> = kind::ALL
                .iter()
                .zip(by_kind.iter())
                .map(|(k, b)| format!("\"{}\":{}", kind::name(*k), b))
                .collect();
            let _ = write!(
                o,
                "{{\"index\":{},\"context_bytes\":{},\"module_bytes\":{},\"data_bytes\":{},\"total_bytes\":{},\"contexts\":{},\"modules\":{},\"busy_ns\":{},\"kernels\":{},\"allocations\":{},\"by_kind\":{{{}}}}}",
                d,
                u.ctx_bytes,
                u.module_bytes,
                u.data_bytes,
                u.total(),
                u.ctx_count,
                u.module_count,
                u.busy_ns,
                u.kernels,
                count,
                kinds.join(",")
            );
        }
        o.push_str("]}");
    }
    o.push_str("],\"groups\":[");
    for (i, g) in s.groups.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let _ = write!(
            o,
            "{{\"name\":{},\"members\":{},\"used_bytes\":[{}],\"high_water_bytes\":[{}]}}",
            json_str(&g.name),
            g.members,
            list(&g.used),
            list(&g.high_water)
        );
    }
    o.push_str("]}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use crate::state::AllocReq;

    #[test]
    fn escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn renders_a_state() {
        let p = std::env::temp_dir().join(format!("vgpu-sim-report-{}", std::process::id()));
        let st = SimState::open_or_create(&p, &SimConfig::default()).unwrap();
        {
            let mut g = st.lock().unwrap();
            let me = std::process::id();
            let s = g
                .register(me, crate::procfs::self_start_time(), "tester \"q\"")
                .unwrap();
            assert!(g.set_group(s, "box-1"));
            g.charge(s, 0, 300 << 20, 0, 1, 0).unwrap();
            g.alloc(&AllocReq {
                slot: s,
                dev: 0,
                kind: kind::MANAGED,
                bytes: 1 << 20,
                span: 1 << 20,
                align: 512,
                charged: 1 << 20,
                ctx: 1,
                aux: 0,
                phys: false,
                fixed: None,
            })
            .unwrap();
        }
        let text = status_report(Some(&p), false).unwrap();
        assert!(text.contains("NVIDIA H100 80GB HBM3"), "{text}");
        assert!(text.contains("managed=1.0"), "{text}");
        assert!(text.contains("alive"), "{text}");
        let json = status_report(Some(&p), true).unwrap();
        assert!(json.starts_with("{\"path\":"));
        assert!(json.contains("\"managed\":1048576"), "{json}");
        assert!(json.contains("\"context_bytes\":314572800"), "{json}");
        assert!(json.contains("tester \\\"q\\\""), "{json}");
        assert!(
            json.contains(
                "\"groups\":[{\"name\":\"box-1\",\"members\":1,\"used_bytes\":[315621376],\"high_water_bytes\":[315621376]}]"
            ),
            "{json}"
        );
        assert!(text.contains("group \"box-1\": 1 processes"), "{text}");
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        drop(st);
        std::fs::remove_file(&p).unwrap();
        assert!(status_report(Some(&p), false)
            .unwrap_err()
            .contains("no simulated GPU state"));
    }
}
