//! Small `/proc` files read whole with one `open`, a `read` or two and a `close`, into the
//! caller's buffer.
//!
//! `std::fs::read_to_string` asks procfs for the size first (it says 0), then reads in
//! growing pieces: eight system calls for a `/proc/<pid>/stat`. Every GPU process of a
//! container reads a few of these as it starts, and a reaper one per slot it judges
//! (issue 9 item 4: 64 processes starting together on two cores).

use std::ffi::CStr;
use std::io::Write;

/// Why a file could not be read: its `errno` (`ENOENT`: it does not exist).
pub type Errno = i32;

/// The text of the file at `path`, read into `buf` (a longer file is cut at its size).
pub fn read<'a>(path: &CStr, buf: &'a mut [u8]) -> Result<&'a str, Errno> {
    let last_errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: a NUL-terminated path; the descriptor is ours until the close below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    let mut len = 0;
    let result = loop {
        if len == buf.len() {
            break Ok(());
        }
        // SAFETY: reading into the unfilled tail of the caller's buffer.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        match n {
            0 => break Ok(()),
            n if n > 0 => len += n as usize,
            _ if last_errno() == libc::EINTR => {}
            _ => break Err(last_errno()),
        }
    };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    result?;
    // procfs text is ASCII; a cut in the middle of a character keeps the valid prefix.
    let text = &buf[..len];
    Ok(match std::str::from_utf8(text) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default(),
    })
}

/// The text of `/proc/<pid>/<name>`, read into `buf`.
pub fn read_of_pid<'a>(pid: i32, name: &str, buf: &'a mut [u8]) -> Result<&'a str, Errno> {
    let mut path = [0u8; 64];
    let len = {
        let mut cur = std::io::Cursor::new(&mut path[..63]);
        if write!(cur, "/proc/{pid}/{name}").is_err() {
            return Err(libc::ENAMETOOLONG);
        }
        cur.position() as usize
    };
    let path = CStr::from_bytes_with_nul(&path[..=len]).map_err(|_| libc::EINVAL)?;
    read(path, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_procfs_file_as_std_does() {
        let mut buf = [0u8; 4096];
        let ours = read(c"/proc/self/status", &mut buf).unwrap().to_string();
        let std = std::fs::read_to_string("/proc/self/status").unwrap();
        // Both name this process; fields like the context-switch counts may move between.
        assert_eq!(ours.lines().next(), std.lines().next());
        assert_eq!(ours.lines().count(), std.lines().count());
    }

    #[test]
    fn reads_another_pids_file_and_says_when_it_is_missing() {
        let mut buf = [0u8; 1024];
        let me = std::process::id() as i32;
        let stat = read_of_pid(me, "stat", &mut buf).unwrap();
        assert!(stat.starts_with(&format!("{me} (")), "{stat}");
        assert_eq!(read_of_pid(i32::MAX, "stat", &mut buf), Err(libc::ENOENT));
    }

    #[test]
    fn a_file_longer_than_the_buffer_is_cut_at_its_size() {
        let mut buf = [0u8; 8];
        let cut = read(c"/proc/self/status", &mut buf).unwrap();
        assert_eq!(cut.len(), 8);
        assert!(cut.starts_with("Name:\t"), "{cut:?}");
    }
}
