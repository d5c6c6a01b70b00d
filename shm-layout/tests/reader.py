#!/usr/bin/env python3
"""Independent reader of a vgpu shared region, written from shm-layout/SPEC.md alone.

Usage: reader.py FILE  -> prints one JSON object on stdout; exit 2 if FILE is not a v1 region.
Only the standard library (struct, mmap, json).
"""
import json
import mmap
import struct
import sys

# SPEC §2, §3
V1_SIZE = 2008952
REGION_SIZE = 3145728
HAMI_MAGIC = 19920718
MAX_DEVICES = 16
MAX_PROCS = 1024
UUID_LEN = 96
UUIDS_OFF = 64
LIMIT_OFF = 1600
SM_LIMIT_OFF = 1728
PROCS_OFF = 1856
SLOT_SIZE = 1960
TAIL_OFF = 2008896  # proc_num, utilization_switch, recent_kernel, priority
LAST_KERNEL_TIME_OFF = 2008912
# SPEC §4
EXT_OFFSET = 2009088
EXT_MAGIC = b"VGPU_EXT"
EXT_DEVICES_OFF = 256
EXT_SLOTS_OFF = 4352
EXT_RECORD = 256
SLOT_STATE_NAMES = {0: "free", 1: "claiming", 2: "active", 3: "tombstone"}


def u64(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


def i64(buf, off):
    return struct.unpack_from("<q", buf, off)[0]


def u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def i32(buf, off):
    return struct.unpack_from("<i", buf, off)[0]


def cstr(buf, off, size):
    raw = bytes(buf[off:off + size])
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def read_used(buf, slot_off, dev):
    """SPEC §5.2: seqlock-consistent read of used[dev]; bounded retries."""
    mem = slot_off + 8 + 64 * dev
    values = None
    for _ in range(64):
        before = u64(buf, slot_off + 1936)
        values = struct.unpack_from("<QQQQQ", buf, mem)
        after = u64(buf, slot_off + 1936)
        if before % 2 == 0 and before == after:
            break
    context, module, data, _offset, total = values
    return {"context": context, "module": module, "data": data, "total": total}


def read_ext(buf, size, device_count, slot_indices):
    if size < REGION_SIZE or bytes(buf[EXT_OFFSET:EXT_OFFSET + 8]) != EXT_MAGIC:
        return None
    e = EXT_OFFSET
    ext = {
        "ext_major": u32(buf, e + 8),
        "ext_minor": u32(buf, e + 12),
        "ext_size": u64(buf, e + 16),
        "region_size": u64(buf, e + 24),
        "ext_offset": u64(buf, e + 32),
        "generation": u64(buf, e + 128),
        "boot_id_hash": u64(buf, e + 136),
        "flags": u32(buf, e + 152),
        "slot_high_water": u32(buf, e + 156),
        "devices": [],
        "slots": [],
    }
    for d in range(device_count):
        r = e + EXT_DEVICES_OFF + EXT_RECORD * d
        ext["devices"].append({
            "index": d,
            "uuid_key": u64(buf, r + 0),
            "limit_bytes": u64(buf, r + 8),
            "sm_limit": u64(buf, r + 16),
            "refill_rate": u64(buf, r + 24),
            "bucket_capacity": i64(buf, r + 32),
            "cost_hint_ns": i64(buf, r + 56),
            "reserved_bytes": u64(buf, r + 64),
            "peak_reserved_bytes": u64(buf, r + 72),
            "reserve_failures": u64(buf, r + 80),
            "tokens": i64(buf, r + 128),
            "last_refill_ns": u64(buf, r + 136),
        })
    for i in slot_indices:
        r = e + EXT_SLOTS_OFF + EXT_RECORD * i
        state = u32(buf, r + 8)
        ext["slots"].append({
            "index": i,
            "owner_token": u64(buf, r + 0),
            "state": SLOT_STATE_NAMES.get(state, str(state)),
            "pid": i32(buf, r + 12),
            "start_time": u64(buf, r + 16),
            "op_seq": u64(buf, r + 32),
            "reserved": [u64(buf, r + 64 + 8 * d) for d in range(device_count)],
        })
    return ext


def main():
    if len(sys.argv) != 2:
        print("usage: reader.py FILE", file=sys.stderr)
        return 64
    with open(sys.argv[1], "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < V1_SIZE:
            print(json.dumps({"error": "too small", "size": size}))
            return 2
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    magic, major, minor, sm_init_flag = struct.unpack_from("<iiii", buf, 0)
    if magic != HAMI_MAGIC or major != 1:
        print(json.dumps({"error": "not a v1 region", "magic": magic, "major": major}))
        return 2
    device_num = u64(buf, 56)
    device_count = max(0, min(device_num, MAX_DEVICES))
    proc_num, utilization_switch, recent_kernel, priority = struct.unpack_from(
        "<iiii", buf, TAIL_OFF)
    out = {
        "size": size,
        "magic": magic,
        "major_version": major,
        "minor_version": minor,
        "device_num": device_num,
        "proc_num": proc_num,
        "utilization_switch": utilization_switch,
        "recent_kernel": recent_kernel,
        "priority": priority,
        "last_kernel_time": u64(buf, LAST_KERNEL_TIME_OFF),
        "devices": [],
        "slots": [],
    }
    for d in range(device_count):
        out["devices"].append({
            "index": d,
            "uuid": cstr(buf, UUIDS_OFF + UUID_LEN * d, UUID_LEN),
            "limit": u64(buf, LIMIT_OFF + 8 * d),
            "sm_limit": u64(buf, SM_LIMIT_OFF + 8 * d),
        })
    used_slots = []
    for i in range(MAX_PROCS):
        s = PROCS_OFF + SLOT_SIZE * i
        status = i32(buf, s + 1928)
        if status == 0:
            continue
        used_slots.append(i)
        out["slots"].append({
            "index": i,
            "pid": i32(buf, s + 0),
            "hostpid": i32(buf, s + 4),
            "status": status,
            "used": [read_used(buf, s, d) for d in range(device_count)],
            "sm_util": [u64(buf, s + 1160 + 48 * d + 16) for d in range(device_count)],
        })
    out["ext"] = read_ext(buf, size, device_count, used_slots)
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
