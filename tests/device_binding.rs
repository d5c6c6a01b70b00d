//! A limit follows its device (issue 9 item 3): when `NVIDIA_VISIBLE_DEVICES` lists UUIDs
//! (HAMi's device plugin), `CUDA_DEVICE_MEMORY_LIMIT_<i>` belongs to the i-th UUID whatever
//! order the driver enumerates the devices in and whatever `CUDA_VISIBLE_DEVICES` the
//! application sets; a process using a device with no limit while other devices of the
//! container have one says so in one stderr line. Over a simulated 2-GPU machine; the
//! plugin's list is given in the reverse of the driver's order, as a driver that enumerates
//! differently from the plugin would present it.

mod common;

use common::*;
use testkit::{run_default, Output, SimEnv};

/// The simulated devices' UUIDs in the driver's order.
fn driver_uuids(sim: &SimEnv) -> (String, String) {
    let out = run_default(command(sim, Style::Linked, false).arg("info"));
    out.assert_success("info");
    let kv = out.kv();
    (
        kv.str("dev0.uuid").to_string(),
        kv.str("dev1.uuid").to_string(),
    )
}

fn meminfo(sim: &SimEnv, visible: Option<&str>) -> Output {
    let mut c = command(sim, Style::Linked, true);
    if let Some(v) = visible {
        c.env("CUDA_VISIBLE_DEVICES", v);
    }
    let out = run_default(c.arg("meminfo"));
    out.assert_success(&format!("meminfo CUDA_VISIBLE_DEVICES={visible:?}"));
    out
}

fn vgpu_lines(out: &Output) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("vgpu["))
        .collect()
}

#[test]
fn each_limit_stays_with_its_uuid_whatever_the_enumeration_and_visible_devices() {
    let probe = machine().var("VGPU_SIM_DEVICES", "2");
    let (uuid0, uuid1) = driver_uuids(&probe);
    assert_ne!(uuid0, uuid1);
    // The plugin lists driver device 1 first: limit _0 (1 GiB) is device 1's, _1 (2 GiB)
    // device 0's.
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("NVIDIA_VISIBLE_DEVICES", format!("{uuid1},{uuid0}"))
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "2g");
    for (visible, expect, what) in [
        (None, 2 * GIB, "ordinal 0 is driver device 0, listed second"),
        (Some("1"), GIB, "ordinal 0 is driver device 1, listed first"),
        (Some("0"), 2 * GIB, "index 0 names driver device 0"),
        (Some(uuid0.as_str()), 2 * GIB, "by UUID"),
        (Some(uuid1.as_str()), GIB, "by UUID"),
    ] {
        let out = meminfo(&sim, visible);
        assert_eq!(
            out.kv().u64("total"),
            expect,
            "{what} (CUDA_VISIBLE_DEVICES={visible:?})\n{}",
            out.describe()
        );
        assert!(
            vgpu_lines(&out).is_empty(),
            "no warning\n{}",
            out.describe()
        );
    }
    // Control: without the UUID list the same limits go by the driver's order.
    let by_index = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "2g");
    assert_eq!(meminfo(&by_index, None).kv().u64("total"), GIB);
    assert_eq!(meminfo(&by_index, Some("1")).kv().u64("total"), 2 * GIB);
}

#[test]
fn the_limit_is_enforced_on_the_device_it_names_across_processes() {
    let probe = machine().var("VGPU_SIM_DEVICES", "2");
    let (uuid0, uuid1) = driver_uuids(&probe);
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("NVIDIA_VISIBLE_DEVICES", format!("{uuid1},{uuid0}"))
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "512m")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "1g");
    // A process that sees driver device 1 as its ordinal 0 fills the 512 MiB slice.
    let mut c = command(&sim, Style::Linked, true);
    c.env("CUDA_VISIBLE_DEVICES", "1");
    let out = run_default(c.args(["cap-fill", &(64 * MIB).to_string()]));
    out.assert_success("cap-fill on driver device 1");
    let kv = out.kv();
    assert_eq!(kv.u64("total"), 512 * MIB, "{}", out.describe());
    assert_eq!(
        kv.i64("one_more_rc"),
        2,
        "one byte over\n{}",
        out.describe()
    );
    assert!(kv.u64("allocated") <= 512 * MIB, "{}", out.describe());
}

#[test]
fn a_device_without_a_limit_beside_limited_ones_says_so_once() {
    let probe = machine().var("VGPU_SIM_DEVICES", "2");
    let (uuid0, uuid1) = driver_uuids(&probe);
    // The issue's case: two GPUs, only _0 set, the application on the second.
    for (nvidia_visible, what) in [
        (Some(format!("{uuid0},{uuid1}")), "UUID list"),
        (None, "index order"),
    ] {
        let mut sim = machine()
            .var("VGPU_SIM_DEVICES", "2")
            .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g");
        if let Some(v) = &nvidia_visible {
            sim.set("NVIDIA_VISIBLE_DEVICES", v);
        }
        let mut c = command(&sim, Style::Linked, true);
        c.env("CUDA_VISIBLE_DEVICES", "1");
        // cap-fill makes many calls on the device: still one line.
        let out = run_default(c.args(["cap-fill", &(4 * GIB).to_string()]));
        out.assert_success(&format!("uncapped device ({what})"));
        assert!(
            out.kv().u64("total") > 40 * GIB,
            "{what}: device 1 has no limit\n{}",
            out.describe()
        );
        let lines = vgpu_lines(&out);
        assert_eq!(lines.len(), 1, "{what}: one line\n{}", out.describe());
        assert!(
            lines[0].contains(&uuid1) && lines[0].contains("no limit"),
            "{what}: {}",
            lines[0]
        );
        // The limited device stays silent.
        let quiet = meminfo(&sim, Some("0"));
        assert_eq!(quiet.kv().u64("total"), GIB);
        assert!(vgpu_lines(&quiet).is_empty(), "{}", quiet.describe());
    }
    // A device the plugin's list does not name.
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("NVIDIA_VISIBLE_DEVICES", &uuid0)
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g");
    let out = meminfo(&sim, Some("1"));
    let lines = vgpu_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.describe());
    assert!(
        lines[0].contains("not in NVIDIA_VISIBLE_DEVICES"),
        "{}",
        lines[0]
    );
    // No limit anywhere: nothing to say.
    let free = machine().var("VGPU_SIM_DEVICES", "2");
    assert!(vgpu_lines(&meminfo(&free, Some("1"))).is_empty());
}

#[test]
fn nvml_shows_each_device_its_own_slice_by_uuid() {
    let Some(python) = testkit::require_venv("nvml_shows_each_device_its_own_slice_by_uuid") else {
        return;
    };
    let probe = machine().var("VGPU_SIM_DEVICES", "2");
    let (uuid0, uuid1) = driver_uuids(&probe);
    let sim = machine()
        .var("VGPU_SIM_DEVICES", "2")
        .var("NVIDIA_VISIBLE_DEVICES", format!("{uuid1},{uuid0}"))
        .var("CUDA_DEVICE_MEMORY_LIMIT_0", "1g")
        .var("CUDA_DEVICE_MEMORY_LIMIT_1", "2g");
    let script = r#"
import pynvml
pynvml.nvmlInit()
for u in ("UUID0", "UUID1"):
    h = pynvml.nvmlDeviceGetHandleByUUID(u.encode())
    print(f"{u}={pynvml.nvmlDeviceGetMemoryInfo(h).total}")
"#
    .replace("UUID0", &uuid0)
    .replace("UUID1", &uuid1);
    let mut c = sim.command(&python);
    c.env("LD_PRELOAD", libvgpu());
    let out = run_default(c.args(["-c", &script]));
    out.assert_success("pynvml memory info by UUID");
    let kv = out.kv();
    assert_eq!(kv.u64(&uuid0), 2 * GIB, "{}", out.describe());
    assert_eq!(kv.u64(&uuid1), GIB, "{}", out.describe());
}
