//! Pins every offset, size and alignment of the region. A failure here means the bytes on
//! disk changed: HAMi's monitor (v1 block) or other vgpu versions (extension) would misread.

use core::mem::{align_of, offset_of, size_of};

use crate::*;

macro_rules! assert_offsets {
    ($ty:ty { $($field:ident : $off:expr),* $(,)? }) => {
        $( assert_eq!(offset_of!($ty, $field), $off,
            concat!(stringify!($ty), "::", stringify!($field))); )*
    };
}

#[test]
fn v1_arithmetic_adds_up() {
    // Header: 4 x i32 + u64 + sem_t(32) + u64 = 64; then uuids, limit, sm_limit.
    assert_eq!(4 * 4 + 8 + 32 + 8, 64);
    assert_eq!(64 + MAX_DEVICES * UUID_LEN, 1600);
    assert_eq!(1600 + MAX_DEVICES * 8, 1728);
    assert_eq!(1728 + MAX_DEVICES * 8, 1856);
    assert_eq!(1856 + MAX_PROCS * PROC_SLOT_SIZE, 2_008_896);
    assert_eq!(2_008_896 + 4 * 4 + 8 + 32, V1_SIZE);
    // Slot: 2 x i32, 16 x 64, 16 x 8, 16 x 48, i32 + pad, u64, 2 x u64.
    assert_eq!(8 + 16 * 64, 1032);
    assert_eq!(1032 + 16 * 8, 1160);
    assert_eq!(1160 + 16 * 48, 1928);
    assert_eq!(1928 + 8 + 8 + 16, PROC_SLOT_SIZE);
}

#[test]
fn v1_element_types() {
    assert_eq!(size_of::<DeviceMemory>(), 64);
    assert_eq!(align_of::<DeviceMemory>(), 8);
    assert_offsets!(DeviceMemory {
        context_size: 0,
        module_size: 8,
        data_size: 16,
        offset: 24,
        total: 32,
        _reserved: 40,
    });
    assert_eq!(size_of::<DeviceUtil>(), 48);
    assert_eq!(align_of::<DeviceUtil>(), 8);
    assert_offsets!(DeviceUtil {
        dec_util: 0,
        enc_util: 8,
        sm_util: 16,
        _reserved: 24
    });
    assert_eq!(size_of::<OpaqueSem>(), 32);
    assert_eq!(align_of::<OpaqueSem>(), 1);
    assert_eq!(size_of::<UuidBytes>(), UUID_LEN);
    assert_eq!(align_of::<UuidBytes>(), 1);
}

#[test]
fn v1_proc_slot() {
    assert_eq!(size_of::<ProcSlot>(), PROC_SLOT_SIZE);
    assert_eq!(align_of::<ProcSlot>(), 8);
    assert_offsets!(ProcSlot {
        pid: 0,
        hostpid: 4,
        used: 8,
        monitorused: 1032,
        device_util: 1160,
        status: 1928,
        _status_pad: 1932,
        seqlock: 1936,
        _reserved: 1944,
    });
}

#[test]
fn v1_region() {
    assert_eq!(size_of::<HamiV1Region>(), V1_SIZE);
    assert_eq!(align_of::<HamiV1Region>(), 8);
    assert_offsets!(HamiV1Region {
        magic: 0,
        major_version: 4,
        minor_version: 8,
        sm_init_flag: 12,
        owner_pid: 16,
        sem: 24,
        device_num: 56,
        uuids: 64,
        limit: 1600,
        sm_limit: 1728,
        procs: 1856,
        proc_num: 2_008_896,
        utilization_switch: 2_008_900,
        recent_kernel: 2_008_904,
        priority: 2_008_908,
        last_kernel_time: 2_008_912,
        sem_postinit: 2_008_920,
    });
}

#[test]
fn ext_header() {
    assert_eq!(size_of::<RobustLockArea>(), 64);
    assert_eq!(align_of::<RobustLockArea>(), 64);
    const { assert!(PTHREAD_MUTEX_BYTES <= 64) };
    assert_eq!(size_of::<ExtHeader>(), EXT_HEADER_SIZE);
    assert_eq!(align_of::<ExtHeader>(), 64);
    assert_offsets!(ExtHeader {
        ext_magic: 0,
        ext_major: 8,
        ext_minor: 12,
        ext_size: 16,
        region_size: 24,
        ext_offset: 32,
        device_capacity: 40,
        slot_capacity: 44,
        device_record_size: 48,
        slot_record_size: 52,
        created_unix_ns: 56,
        lock: 64,
        generation: 128,
        boot_id_hash: 136,
        last_reap_ns: 144,
        flags: 152,
        slot_high_water: 156,
        lock_holder_pid: 160,
        _pad0: 164,
        _reserved: 168,
    });
    assert_eq!(
        validate::EXT_PROBE_LEN,
        offset_of!(ExtHeader, boot_id_hash) + 8
    );
}

#[test]
fn ext_device_record() {
    assert_eq!(size_of::<DeviceExt>(), DEVICE_EXT_SIZE);
    assert_eq!(align_of::<DeviceExt>(), 64);
    assert_offsets!(DeviceExt {
        uuid_key: 0,
        limit_bytes: 8,
        sm_limit: 16,
        refill_rate: 24,
        bucket_capacity: 32,
        flags: 40,
        _reserved0: 48,
        reserved_bytes: 64,
        peak_reserved_bytes: 72,
        reserve_failures: 80,
        context_bytes_hint: 88,
        context_measure_until_ns: 96,
        context_parked_until_ns: 104,
        _reserved1: 112,
        tokens: 128,
        last_refill_ns: 136,
        throttled_launches: 144,
        throttle_wait_ns: 152,
        launch_charged_ns: 160,
        launches_milli: 168,
        _reserved2: 176,
        _reserved3: 192,
    });
}

#[test]
fn ext_slot_record() {
    assert_eq!(size_of::<SlotExt>(), SLOT_EXT_SIZE);
    assert_eq!(align_of::<SlotExt>(), 64);
    assert_offsets!(SlotExt {
        owner_token: 0,
        state: 8,
        pid: 12,
        start_time: 16,
        heartbeat_ns: 24,
        op_seq: 32,
        claim_ns: 40,
        pid_ns: 48,
        _reserved0: 56,
        reserved: 64,
        _reserved1: 192,
    });
}

#[test]
fn ext_block_and_region() {
    assert_eq!(EXT_OFFSET % 2048, 0);
    const { assert!(EXT_OFFSET >= V1_SIZE) };
    assert_eq!(size_of::<ExtBlock>(), EXT_SIZE);
    assert_offsets!(ExtBlock {
        header: 0,
        devices: EXT_DEVICES_OFFSET,
        slots: EXT_SLOTS_OFFSET,
        _reserved_tail: EXT_TAIL_OFFSET,
    });
    assert_eq!(EXT_DEVICES_OFFSET, 256);
    assert_eq!(EXT_SLOTS_OFFSET, 4352);
    assert_eq!(EXT_TAIL_OFFSET, 266_496);
    assert_eq!(EXT_RESERVED_TAIL_WORDS * 8, EXT_SIZE - EXT_TAIL_OFFSET);
    assert_eq!(size_of::<Region>(), REGION_SIZE);
    assert_eq!(align_of::<Region>(), 64);
    assert_offsets!(Region {
        v1: 0,
        _v1_gap: V1_SIZE,
        ext: EXT_OFFSET
    });
    const { assert!(REGION_SIZE <= 4 * 1024 * 1024) };
    assert_eq!(REGION_SIZE % 4096, 0);
}

#[test]
fn magic_bytes_on_disk() {
    assert_eq!(HAMI_MAGIC.to_le_bytes(), [0x4e, 0xf7, 0x2f, 0x01]);
    assert_eq!(EXT_MAGIC.to_le_bytes(), *b"VGPU_EXT");
}
