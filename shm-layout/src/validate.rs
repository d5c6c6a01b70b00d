//! Attach-time classification of a region file: a pure function of the file length and a
//! few header fields, so it can be tested exhaustively and run before anything is mapped.

use core::sync::atomic::Ordering;

use crate::{
    Region, EXT_MAGIC, EXT_MAJOR_VERSION, EXT_OFFSET, EXT_SIZE, HAMI_MAGIC, HAMI_MAJOR_VERSION,
    REGION_SIZE, V1_SIZE,
};

/// The header fields attach-time validation looks at. Fields beyond the end of the file
/// read as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderView {
    /// v1 offset 0.
    pub magic: i32,
    /// v1 offset 4.
    pub major_version: i32,
    /// v1 offset 8.
    pub minor_version: i32,
    /// `EXT_OFFSET + 0`.
    pub ext_magic: u64,
    /// `EXT_OFFSET + 8`.
    pub ext_major: u32,
    /// `EXT_OFFSET + 12`.
    pub ext_minor: u32,
    /// `EXT_OFFSET + 16`.
    pub ext_size: u64,
    /// `EXT_OFFSET + 24`.
    pub region_size: u64,
    /// `EXT_OFFSET + 32`.
    pub ext_offset: u64,
    /// `EXT_OFFSET + 136` (0 = unknown).
    pub boot_id_hash: u64,
}

/// Bytes of the file starting at offset 0 that [`HeaderView::from_bytes`] reads.
pub const V1_PROBE_LEN: usize = 12;
/// Bytes of the file starting at `EXT_OFFSET` that [`HeaderView::from_bytes`] reads.
pub const EXT_PROBE_LEN: usize = 144;

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

impl HeaderView {
    /// Parses `pread` results: `v1_head` = file bytes from offset 0 (up to
    /// [`V1_PROBE_LEN`]), `ext_head` = file bytes from `EXT_OFFSET` (up to
    /// [`EXT_PROBE_LEN`]). Short slices (a short file) leave the missing fields 0, so a
    /// file can be classified without mapping past its end (which would SIGBUS).
    pub fn from_bytes(v1_head: &[u8], ext_head: &[u8]) -> HeaderView {
        HeaderView {
            magic: le_u32(v1_head, 0) as i32,
            major_version: le_u32(v1_head, 4) as i32,
            minor_version: le_u32(v1_head, 8) as i32,
            ext_magic: le_u64(ext_head, 0),
            ext_major: le_u32(ext_head, 8),
            ext_minor: le_u32(ext_head, 12),
            ext_size: le_u64(ext_head, 16),
            region_size: le_u64(ext_head, 24),
            ext_offset: le_u64(ext_head, 32),
            boot_id_hash: le_u64(ext_head, 136),
        }
    }

    /// Reads the fields from a fully mapped region. The magic is loaded with acquire
    /// ordering, pairing with [`Region::publish`].
    pub fn from_region(region: &Region) -> HeaderView {
        let v1 = &region.v1;
        let h = &region.ext.header;
        HeaderView {
            magic: v1.magic.load(Ordering::Acquire),
            major_version: v1.major_version.load(Ordering::Relaxed),
            minor_version: v1.minor_version.load(Ordering::Relaxed),
            ext_magic: h.ext_magic.load(Ordering::Relaxed),
            ext_major: h.ext_major.load(Ordering::Relaxed),
            ext_minor: h.ext_minor.load(Ordering::Relaxed),
            ext_size: h.ext_size.load(Ordering::Relaxed),
            region_size: h.region_size.load(Ordering::Relaxed),
            ext_offset: h.ext_offset.load(Ordering::Relaxed),
            boot_id_hash: h.boot_id_hash.load(Ordering::Relaxed),
        }
    }
}

/// What a region file is, as far as attaching goes. See SPEC.md §6 for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionStatus {
    /// A vgpu region of this layout: map `REGION_SIZE` bytes and share it.
    Valid,
    /// Length 0, or the v1 magic is 0 (never published, or an initializer died midway).
    NeedsInit,
    /// A published vgpu region from an earlier boot: its robust mutex may record an owner
    /// the kernel never marked dead. Re-initialize like `NeedsInit`.
    StaleBoot,
    /// A published region shorter than its layout needs (truncated).
    TooSmall { len: u64, needed: u64 },
    /// The first 4 bytes are neither 0 nor HAMi's magic: not a region file.
    ForeignMagic { magic: i32 },
    /// HAMi's magic with a major version other than 1.
    WrongVersion { major: i32, minor: i32 },
    /// A HAMi v1 region without (a recognizable) vgpu extension: created by HAMi-core's
    /// libvgpu.so, whose processes may still be using it.
    V1OnlyNoExtension,
    /// vgpu's extension magic with an incompatible major version or other sizes.
    ExtensionMismatch {
        ext_major: u32,
        ext_minor: u32,
        ext_size: u64,
        region_size: u64,
        ext_offset: u64,
    },
}

/// What the attaching process does for each [`RegionStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachAction {
    /// Map the file and share it.
    Share,
    /// Under the exclusive `flock`: re-classify, `ftruncate` to `REGION_SIZE`, init, init the
    /// mutex, publish; then share.
    Initialize,
    /// Leave the file untouched; print one stderr line; enforce limits with a process-local
    /// region ([`Region::new_boxed`]). Never `exit()`.
    ProcessLocal,
}

impl RegionStatus {
    /// The action SPEC.md prescribes for this status.
    pub fn action(&self) -> AttachAction {
        match self {
            RegionStatus::Valid => AttachAction::Share,
            RegionStatus::NeedsInit | RegionStatus::StaleBoot => AttachAction::Initialize,
            RegionStatus::TooSmall { .. }
            | RegionStatus::ForeignMagic { .. }
            | RegionStatus::WrongVersion { .. }
            | RegionStatus::V1OnlyNoExtension
            | RegionStatus::ExtensionMismatch { .. } => AttachAction::ProcessLocal,
        }
    }
}

/// Classifies a region file of `file_len` bytes whose header reads as `header`.
///
/// `current_boot_id_hash` is [`boot_id_hash`](crate::boot_id_hash) of this boot, or 0 when
/// unknown (then a stale boot is never reported). Rules, first match wins:
///
/// 1. `file_len == 0` or `magic == 0` → `NeedsInit`
/// 2. `file_len < V1_SIZE` → `TooSmall`
/// 3. `magic != HAMI_MAGIC` → `ForeignMagic`
/// 4. `major_version != 1` → `WrongVersion`
/// 5. `ext_magic != EXT_MAGIC` → `V1OnlyNoExtension`
/// 6. `ext_major`, `ext_size`, `region_size` or `ext_offset` differ from this build →
///    `ExtensionMismatch` (a higher `ext_minor` is compatible)
/// 7. `file_len < REGION_SIZE` → `TooSmall`
/// 8. both boot id hashes non-zero and different → `StaleBoot`
/// 9. otherwise `Valid`
pub fn classify(file_len: u64, header: &HeaderView, current_boot_id_hash: u64) -> RegionStatus {
    if file_len == 0 || header.magic == 0 {
        return RegionStatus::NeedsInit;
    }
    if file_len < V1_SIZE as u64 {
        return RegionStatus::TooSmall {
            len: file_len,
            needed: V1_SIZE as u64,
        };
    }
    if header.magic != HAMI_MAGIC {
        return RegionStatus::ForeignMagic {
            magic: header.magic,
        };
    }
    if header.major_version != HAMI_MAJOR_VERSION {
        return RegionStatus::WrongVersion {
            major: header.major_version,
            minor: header.minor_version,
        };
    }
    if header.ext_magic != EXT_MAGIC {
        return RegionStatus::V1OnlyNoExtension;
    }
    if header.ext_major != EXT_MAJOR_VERSION
        || header.ext_size != EXT_SIZE as u64
        || header.region_size != REGION_SIZE as u64
        || header.ext_offset != EXT_OFFSET as u64
    {
        return RegionStatus::ExtensionMismatch {
            ext_major: header.ext_major,
            ext_minor: header.ext_minor,
            ext_size: header.ext_size,
            region_size: header.region_size,
            ext_offset: header.ext_offset,
        };
    }
    if file_len < REGION_SIZE as u64 {
        return RegionStatus::TooSmall {
            len: file_len,
            needed: REGION_SIZE as u64,
        };
    }
    if current_boot_id_hash != 0
        && header.boot_id_hash != 0
        && header.boot_id_hash != current_boot_id_hash
    {
        return RegionStatus::StaleBoot;
    }
    RegionStatus::Valid
}
