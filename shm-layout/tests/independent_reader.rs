//! Builds a region in a real `MAP_SHARED` file with the crate, then has `tests/reader.py`
//! — written from SPEC.md alone — read it, and checks every value it reports.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;

use shm_layout::*;

const GPU: &str = "GPU-0b5c7a2e-1f3d-4c6b-9a8e-7d6c5b4a3f21";
const MIG: &str = "MIG-4e1d2c3b-5a69-4788-9b0a-1c2d3e4f5a6b";
const GIB: u64 = 1 << 30;

/// (context_size, module_size, data_size) of one process on one device.
type DeviceParts = (u64, u64, u64);
/// (pid, hostpid, parts per device, sm_util per device).
type TestProc = (i32, i32, [DeviceParts; 2], [u64; 2]);

/// The three live processes, with distinct values everywhere.
const PROCS: [TestProc; 3] = [
    (
        101,
        50_101,
        [(300 << 20, 7 << 20, 1 << 30), (0, 0, 0)],
        [41, 0],
    ),
    (
        102,
        50_102,
        [(310 << 20, 9 << 20, 123_456_789), (290 << 20, 1 << 20, 5)],
        [17, 3],
    ),
    (
        103,
        0,
        [(0, 0, 0), (280 << 20, 2 << 20, 777 << 20)],
        [0, 66],
    ),
];

// ---- a minimal JSON parser (objects, arrays, integers, strings, true/false/null) ----

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "at byte {}", self.i);
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut map = BTreeMap::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(map);
                }
                loop {
                    let Json::Str(key) = self.value() else {
                        panic!("object key")
                    };
                    self.eat(b':');
                    map.insert(key, self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(map);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(items);
                }
                loop {
                    items.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(items);
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let start = self.i;
                while self.s[self.i] != b'"' {
                    assert_ne!(self.s[self.i], b'\\', "escapes not expected");
                    self.i += 1;
                }
                self.i += 1;
                Json::Str(String::from_utf8(self.s[start..self.i - 1].to_vec()).unwrap())
            }
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i] == b'-' || self.s[self.i].is_ascii_digit())
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Json::Int(text.parse().unwrap_or_else(|_| panic!("number {text:?}")))
            }
        }
    }
    fn word(&mut self, w: &str, v: Json) -> Json {
        assert!(self.s[self.i..].starts_with(w.as_bytes()));
        self.i += w.len();
        v
    }
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(map) => map.get(key).unwrap_or_else(|| panic!("missing key {key}")),
            _ => panic!("not an object looking up {key}"),
        }
    }
    fn at(&self, i: usize) -> &Json {
        match self {
            Json::Arr(items) => &items[i],
            _ => panic!("not an array"),
        }
    }
    fn len(&self) -> usize {
        match self {
            Json::Arr(items) => items.len(),
            _ => panic!("not an array"),
        }
    }
    fn int(&self) -> i128 {
        match self {
            Json::Int(v) => *v,
            _ => panic!("not an integer: {self:?}"),
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }
}

// ---- the region file ----

struct MappedFile {
    path: PathBuf,
    ptr: *mut u8,
}

impl MappedFile {
    fn create() -> MappedFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "shm-layout-reader-{}-{nanos}.cache",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(REGION_SIZE as u64).unwrap();
        // SAFETY: mapping a file we own of exactly REGION_SIZE bytes; the fd may be closed
        // afterwards (the mapping keeps the file referenced).
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                REGION_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        MappedFile {
            path,
            ptr: ptr.cast(),
        }
    }

    fn region(&self) -> &Region {
        // SAFETY: the mapping lives as long as `self` and is REGION_SIZE bytes; this test is
        // the only process writing it, through atomics.
        unsafe { Region::from_ptr(self.ptr, REGION_SIZE).unwrap() }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `create`; no references outlive `self`.
        unsafe { libc::munmap(self.ptr.cast(), REGION_SIZE) };
        let _ = std::fs::remove_file(&self.path);
    }
}

fn build(region: &Region) -> [usize; 4] {
    assert_eq!(
        classify(REGION_SIZE as u64, &region.header_view(), 0),
        RegionStatus::NeedsInit
    );
    init(
        region,
        &InitParams {
            devices: vec![
                DeviceInit {
                    uuid: GPU.into(),
                    limit_bytes: 4 * GIB,
                    sm_limit: 30,
                },
                DeviceInit {
                    uuid: MIG.into(),
                    limit_bytes: 2 * GIB,
                    sm_limit: 0,
                },
            ],
            priority: 0,
            created_unix_ns: 1_700_000_000_000_000_000,
            boot_id_hash: boot_id_hash("6f1c0c55-4f1a-4a39-9d2b-1c7d8e9f0a1b"),
        },
    )
    .unwrap();
    assert_eq!(
        classify(REGION_SIZE as u64, &region.header_view(), 0),
        RegionStatus::Valid
    );
    let mut slots = [0usize; 4];
    for (n, &(pid, hostpid, usage, sm_util)) in PROCS.iter().enumerate() {
        // Claim a throwaway slot before process 2, then free it: the freed slot becomes a
        // status-0 hole between live slots that readers must skip.
        if n == 1 {
            let token = owner_token(999, 1);
            let doomed = region.claim_slot(token, 999, 9, 0).unwrap();
            region.try_reserve(doomed, 0, 12345).unwrap();
            region.note_peak(0);
            region.v1.procs[doomed].store_usage(
                0,
                &SlotUsage {
                    context_size: 1,
                    module_size: 2,
                    data_size: 3,
                },
            );
            slots[3] = doomed;
        }
        let slot = region
            .claim_slot(owner_token(pid, 7), pid, 1000 + pid as u64, 5)
            .unwrap();
        slots[n] = slot;
        let v1 = &region.v1.procs[slot];
        v1.hostpid.store(hostpid, Relaxed);
        for (dev, &(context_size, module_size, data_size)) in usage.iter().enumerate() {
            let parts = SlotUsage {
                context_size,
                module_size,
                data_size,
            };
            if parts.total() > 0 {
                region.try_reserve(slot, dev, parts.total()).unwrap();
                region.note_peak(dev);
            }
            v1.store_usage(dev, &parts);
            v1.device_util[dev].sm_util.store(sm_util[dev], Relaxed);
        }
    }
    let doomed = slots[3];
    region
        .reclaim_slot(doomed, owner_token(999, 1))
        .expect("reclaim the throwaway slot");
    // What the monitor writes, and the latest launch time.
    region.v1.recent_kernel.store(RECENT_KERNEL_HOLD, Relaxed);
    region.v1.utilization_switch.store(0, Relaxed);
    region.v1.last_kernel_time.store(1_700_000_123, Relaxed);
    slots
}

#[test]
fn python_reader_following_spec_agrees_with_the_crate() {
    let python = Command::new("python3").arg("--version").output();
    if python.map(|o| !o.status.success()).unwrap_or(true) {
        println!("NOTE: python3 not found; skipping the independent reader test");
        return;
    }
    let file = MappedFile::create();
    let region = file.region();
    let slots = build(region);
    assert_eq!(slots[..3], [0, 2, 3], "slot 1 is the freed hole");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reader.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&file.path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "reader.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = Parser {
        s: stdout.as_bytes(),
        i: 0,
    }
    .value();

    // Header.
    assert_eq!(json.get("size").int(), REGION_SIZE as i128);
    assert_eq!(json.get("magic").int(), HAMI_MAGIC as i128);
    assert_eq!(json.get("major_version").int(), 1);
    assert_eq!(json.get("minor_version").int(), 1);
    assert_eq!(json.get("device_num").int(), 2);
    assert_eq!(
        json.get("proc_num").int(),
        4,
        "high-water mark, not a count"
    );
    assert_eq!(json.get("recent_kernel").int(), -1);
    assert_eq!(json.get("utilization_switch").int(), 0);
    assert_eq!(json.get("priority").int(), 0);
    assert_eq!(json.get("last_kernel_time").int(), 1_700_000_123);

    // Devices.
    let devices = json.get("devices");
    assert_eq!(devices.len(), 2);
    for (dev, (uuid, limit, sm)) in [(GPU, 4 * GIB, 30), (MIG, 2 * GIB, 0)]
        .into_iter()
        .enumerate()
    {
        let d = devices.at(dev);
        assert_eq!(d.get("uuid").str(), uuid);
        assert_eq!(d.get("limit").int(), limit as i128);
        assert_eq!(d.get("sm_limit").int(), sm);
        assert_eq!(region.uuid_str(dev).as_deref(), Some(uuid));
    }

    // Slots: exactly the three live ones, in index order, hole skipped.
    let reported = json.get("slots");
    assert_eq!(reported.len(), 3);
    let mut expected_totals = [0u64; 2];
    for (n, &(pid, hostpid, usage, sm_util)) in PROCS.iter().enumerate() {
        let s = reported.at(n);
        assert_eq!(s.get("index").int(), slots[n] as i128);
        assert_eq!(s.get("pid").int(), pid as i128);
        assert_eq!(s.get("hostpid").int(), hostpid as i128);
        assert_eq!(s.get("status").int(), 1);
        for (dev, &(context, module, data)) in usage.iter().enumerate() {
            let used = s.get("used").at(dev);
            assert_eq!(used.get("context").int(), context as i128);
            assert_eq!(used.get("module").int(), module as i128);
            assert_eq!(used.get("data").int(), data as i128);
            assert_eq!(used.get("total").int(), (context + module + data) as i128);
            assert_eq!(s.get("sm_util").at(dev).int(), sm_util[dev] as i128);
            expected_totals[dev] += context + module + data;
        }
    }

    // Extension.
    let ext = json.get("ext");
    assert_eq!(ext.get("ext_major").int(), EXT_MAJOR_VERSION as i128);
    assert_eq!(ext.get("ext_minor").int(), EXT_MINOR_VERSION as i128);
    assert_eq!(ext.get("ext_size").int(), EXT_SIZE as i128);
    assert_eq!(ext.get("region_size").int(), REGION_SIZE as i128);
    assert_eq!(ext.get("ext_offset").int(), EXT_OFFSET as i128);
    assert_eq!(ext.get("slot_high_water").int(), 4);
    assert_eq!(ext.get("flags").int(), 0);
    assert_eq!(
        ext.get("generation").int(),
        region.ext.header.generation.load(Relaxed) as i128
    );
    assert_eq!(
        ext.get("boot_id_hash").int(),
        boot_id_hash("6f1c0c55-4f1a-4a39-9d2b-1c7d8e9f0a1b") as i128
    );
    let ext_devices = ext.get("devices");
    for (dev, (uuid, limit, sm)) in [(GPU, 4 * GIB, 30), (MIG, 2 * GIB, 0)]
        .into_iter()
        .enumerate()
    {
        let d = ext_devices.at(dev);
        assert_eq!(d.get("uuid_key").int(), uuid_key(uuid) as i128);
        assert_eq!(d.get("limit_bytes").int(), limit as i128);
        assert_eq!(d.get("sm_limit").int(), sm);
        assert_eq!(d.get("reserved_bytes").int(), expected_totals[dev] as i128);
        assert_eq!(
            d.get("reserved_bytes").int(),
            region.device(dev).unwrap().reserved_bytes.load(Relaxed) as i128
        );
    }
    // The throwaway slot's 12345 bytes were returned, but the peak saw them.
    assert_eq!(
        ext_devices.at(0).get("peak_reserved_bytes").int(),
        (expected_totals[0] + 12345) as i128
    );
    let ext_slots = ext.get("slots");
    assert_eq!(ext_slots.len(), 3);
    for (n, &(pid, _, usage, _)) in PROCS.iter().enumerate() {
        let s = ext_slots.at(n);
        assert_eq!(s.get("index").int(), slots[n] as i128);
        assert_eq!(s.get("state").str(), "active");
        assert_eq!(s.get("pid").int(), pid as i128);
        assert_eq!(s.get("start_time").int(), 1000 + pid as i128);
        assert_eq!(s.get("owner_token").int(), owner_token(pid, 7) as i128);
        assert_eq!(s.get("op_seq").int() % 2, 0);
        for (dev, &(c, m, d)) in usage.iter().enumerate() {
            assert_eq!(s.get("reserved").at(dev).int(), (c + m + d) as i128);
        }
    }
}
