//! Attach-time classification: every rule of SPEC.md §6, in order.

use shm_layout::*;

fn params() -> InitParams {
    InitParams {
        devices: vec![DeviceInit {
            uuid: "GPU-aaaaaaaa-0000-0000-0000-000000000001".into(),
            limit_bytes: 1 << 30,
            sm_limit: 50,
        }],
        priority: DEFAULT_PRIORITY,
        created_unix_ns: 1,
        boot_id_hash: boot_id_hash("boot-A\n"),
    }
}

fn initialized() -> Box<Region> {
    let region = Region::new_boxed();
    init(&region, &params()).unwrap();
    region
}

const FULL: u64 = REGION_SIZE as u64;

#[test]
fn zeroed_and_empty_files_need_init() {
    let region = Region::new_boxed();
    assert!(region.is_all_zero());
    let view = region.header_view();
    assert_eq!(classify(0, &view, 0), RegionStatus::NeedsInit);
    assert_eq!(classify(FULL, &view, 0), RegionStatus::NeedsInit);
    assert_eq!(classify(100, &view, 0), RegionStatus::NeedsInit);
    assert_eq!(RegionStatus::NeedsInit.action(), AttachAction::Initialize);
}

#[test]
fn torn_init_without_magic_needs_init() {
    let region = Region::new_boxed();
    region.init_unpublished(&params()).unwrap();
    assert_eq!(
        classify(FULL, &region.header_view(), 0),
        RegionStatus::NeedsInit
    );
    region.publish();
    assert_eq!(
        classify(FULL, &region.header_view(), 0),
        RegionStatus::Valid
    );
}

#[test]
fn valid_region() {
    let region = initialized();
    let view = region.header_view();
    assert_eq!(view.magic, HAMI_MAGIC);
    assert_eq!(view.major_version, 1);
    assert_eq!(classify(FULL, &view, 0), RegionStatus::Valid);
    assert_eq!(classify(FULL + 4096, &view, 0), RegionStatus::Valid);
    assert_eq!(
        classify(FULL, &view, boot_id_hash("boot-A")),
        RegionStatus::Valid
    );
    assert_eq!(RegionStatus::Valid.action(), AttachAction::Share);
}

#[test]
fn other_boot_is_stale() {
    let region = initialized();
    let status = classify(FULL, &region.header_view(), boot_id_hash("boot-B"));
    assert_eq!(status, RegionStatus::StaleBoot);
    assert_eq!(status.action(), AttachAction::Initialize);
}

#[test]
fn truncated_files_are_too_small() {
    let region = initialized();
    let view = region.header_view();
    assert_eq!(
        classify(4096, &view, 0),
        RegionStatus::TooSmall {
            len: 4096,
            needed: V1_SIZE as u64
        }
    );
    assert_eq!(
        classify(FULL - 1, &view, 0),
        RegionStatus::TooSmall {
            len: FULL - 1,
            needed: FULL
        }
    );
    assert_eq!(
        classify(FULL - 1, &view, 0).action(),
        AttachAction::ProcessLocal
    );
}

#[test]
fn foreign_magic_and_wrong_version() {
    let region = initialized();
    let mut view = region.header_view();
    view.magic = 0x7f45_4c46;
    assert_eq!(
        classify(FULL, &view, 0),
        RegionStatus::ForeignMagic { magic: 0x7f45_4c46 }
    );
    let mut view = region.header_view();
    view.major_version = 2;
    view.minor_version = 7;
    assert_eq!(
        classify(FULL, &view, 0),
        RegionStatus::WrongVersion { major: 2, minor: 7 }
    );
}

#[test]
fn hami_v1_file_without_extension() {
    // What HAMi-core's libvgpu.so creates: exactly the v1 struct, nothing after it.
    let mut v1_head = Vec::new();
    v1_head.extend_from_slice(&HAMI_MAGIC.to_le_bytes());
    v1_head.extend_from_slice(&1i32.to_le_bytes());
    v1_head.extend_from_slice(&1i32.to_le_bytes());
    let view = HeaderView::from_bytes(&v1_head, &[]);
    let status = classify(V1_SIZE as u64, &view, 0);
    assert_eq!(status, RegionStatus::V1OnlyNoExtension);
    assert_eq!(status.action(), AttachAction::ProcessLocal);
    // A longer HAMi variant whose bytes at EXT_OFFSET are its own data.
    let view = HeaderView::from_bytes(&v1_head, &[0xab; 64]);
    assert_eq!(classify(FULL, &view, 0), RegionStatus::V1OnlyNoExtension);
}

#[test]
fn extension_mismatch() {
    let region = initialized();
    for tweak in 0..4 {
        let mut view = region.header_view();
        match tweak {
            0 => view.ext_major = EXT_MAJOR_VERSION + 1,
            1 => view.ext_size += 64,
            2 => view.region_size = 4 << 20,
            _ => view.ext_offset = 2_008_960,
        }
        let status = classify(FULL, &view, 0);
        assert!(
            matches!(status, RegionStatus::ExtensionMismatch { .. }),
            "{tweak}: {status:?}"
        );
        assert_eq!(status.action(), AttachAction::ProcessLocal);
    }
    // A newer minor version only uses reserved space: still valid.
    let mut view = region.header_view();
    view.ext_minor = EXT_MINOR_VERSION + 3;
    assert_eq!(classify(FULL, &view, 0), RegionStatus::Valid);
}

#[test]
fn header_view_from_file_bytes_matches_region() {
    let region = initialized();
    // Serialize the header the way the file holds it and parse it back.
    let h = &region.ext.header;
    use std::sync::atomic::Ordering::Relaxed;
    let mut v1_head = Vec::new();
    v1_head.extend_from_slice(&region.v1.magic.load(Relaxed).to_le_bytes());
    v1_head.extend_from_slice(&region.v1.major_version.load(Relaxed).to_le_bytes());
    v1_head.extend_from_slice(&region.v1.minor_version.load(Relaxed).to_le_bytes());
    let mut ext_head = vec![0u8; 144];
    ext_head[0..8].copy_from_slice(&h.ext_magic.load(Relaxed).to_le_bytes());
    ext_head[8..12].copy_from_slice(&h.ext_major.load(Relaxed).to_le_bytes());
    ext_head[12..16].copy_from_slice(&h.ext_minor.load(Relaxed).to_le_bytes());
    ext_head[16..24].copy_from_slice(&h.ext_size.load(Relaxed).to_le_bytes());
    ext_head[24..32].copy_from_slice(&h.region_size.load(Relaxed).to_le_bytes());
    ext_head[32..40].copy_from_slice(&h.ext_offset.load(Relaxed).to_le_bytes());
    ext_head[136..144].copy_from_slice(&h.boot_id_hash.load(Relaxed).to_le_bytes());
    assert_eq!(
        HeaderView::from_bytes(&v1_head, &ext_head),
        region.header_view()
    );
}

#[test]
fn from_ptr_checks() {
    let region = Region::new_boxed();
    let ptr = (&*region as *const Region).cast_mut().cast::<u8>();
    // SAFETY: the box is live for the whole test and REGION_SIZE bytes long.
    unsafe {
        assert!(Region::from_ptr(ptr, REGION_SIZE).is_ok());
        assert_eq!(
            Region::from_ptr(ptr, REGION_SIZE - 1).err(),
            Some(LayoutError::TooSmall {
                len: REGION_SIZE - 1,
                needed: REGION_SIZE
            })
        );
        assert!(matches!(
            Region::from_ptr(ptr.add(8), REGION_SIZE - 8),
            Err(LayoutError::Misaligned { .. })
        ));
        assert_eq!(
            Region::from_ptr(core::ptr::null_mut(), REGION_SIZE).err(),
            Some(LayoutError::NullPointer)
        );
    }
}

fn bytes(region: &Region) -> &[u8] {
    // SAFETY: a `Region` is `REGION_SIZE` plain bytes (atomics and the lock area), and
    // nothing writes this one while the test reads it.
    unsafe { std::slice::from_raw_parts((region as *const Region).cast::<u8>(), REGION_SIZE) }
}

#[test]
fn fresh_init_of_a_zeroed_region_writes_what_a_clearing_init_writes() {
    // A used region, reinitialised (clearing pass) ...
    let used = Region::new_boxed();
    let other = InitParams {
        devices: vec![
            DeviceInit {
                uuid: "GPU-bbbbbbbb-0000-0000-0000-000000000002".into(),
                limit_bytes: 5 << 30,
                sm_limit: 10,
            };
            3
        ]
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            d.uuid.push_str(&i.to_string());
            d
        })
        .collect(),
        priority: 0,
        created_unix_ns: 99,
        boot_id_hash: boot_id_hash("boot-B\n"),
    };
    init(&used, &other).unwrap();
    used.init_unpublished(&params()).unwrap();
    // ... and a never-used one initialised without clearing: the same bytes.
    let fresh = Region::new_boxed();
    fresh.init_fresh_unpublished(&params()).unwrap();
    assert!(bytes(&used) == bytes(&fresh));
    fresh.publish();
    assert_eq!(classify(FULL, &fresh.header_view(), 0), RegionStatus::Valid);
}
