//! Logging by `LIBCUDA_LOG_LEVEL` (0 errors .. 4 debug, default 2), to stderr.
//!
//! When a level is off, a log statement costs one relaxed load and a branch: no `getenv`
//! (HAMi-core lost 23 % of launch throughput to a `getenv` in its logging macro), no
//! formatting. Lines are formatted into a stack buffer and written with one `write(2)`,
//! so logging never allocates and never takes std's stderr lock.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

pub const ERROR: u8 = 0;
pub const WARN: u8 = 1;
pub const INFO: u8 = 2;
pub const DEBUG: u8 = 4;

static LEVEL: AtomicU8 = AtomicU8::new(crate::config::DEFAULT_LOG_LEVEL);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

#[inline(always)]
pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line `vgpu[pid]: ...` to stderr (truncated at 480 bytes).
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut buf = [0u8; 512];
    let len = {
        let mut cur = std::io::Cursor::new(&mut buf[..480]);
        // SAFETY: getpid has no preconditions.
        let _ = write!(cur, "vgpu[{}]: ", unsafe { libc::getpid() });
        let _ = cur.write_fmt(args);
        cur.position() as usize
    };
    buf[len] = b'\n';
    // SAFETY: writing an initialised buffer to fd 2.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len + 1);
    }
}

/// `vlog!(level, "fmt", args...)`: log if `LIBCUDA_LOG_LEVEL` >= level.
#[macro_export]
macro_rules! vlog {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write_line(format_args!($($arg)*));
        }
    };
}
