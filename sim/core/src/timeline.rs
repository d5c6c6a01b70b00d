//! The device timeline: kernels of all processes run one at a time per device; each busy
//! interval is kept in a ring so utilization can be computed over recent windows.
//! All times are CLOCK_MONOTONIC nanoseconds passed in by the caller (injected clock).

/// One busy interval of a device (24 bytes, `repr(C)`: it lives in the shared file).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interval {
    pub start: u64,
    pub end: u64,
    pub pid: u32,
    /// Process-table slot of the launching process.
    pub slot: u32,
}

/// When a kernel of `cost` ns submitted at `now` runs, given the device is busy until
/// `busy_until` and the stream may not start before `not_before`: `(start, end)`.
pub fn schedule(now: u64, busy_until: u64, not_before: u64, cost: u64) -> (u64, u64) {
    let start = now.max(busy_until).max(not_before);
    (start, start.saturating_add(cost))
}

/// A ring of intervals over borrowed storage, oldest overwritten first.
pub struct Ring<'a> {
    buf: &'a mut [Interval],
    head: &'a mut u32,
    len: &'a mut u32,
}

impl<'a> Ring<'a> {
    /// Wraps storage; `head` is the next write position, `len` the number of valid entries.
    pub fn new(buf: &'a mut [Interval], head: &'a mut u32, len: &'a mut u32) -> Ring<'a> {
        let cap = buf.len() as u32;
        if *head >= cap {
            *head = 0;
        }
        if *len > cap {
            *len = cap;
        }
        Ring { buf, head, len }
    }

    pub fn len(&self) -> usize {
        *self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        *self.len == 0
    }

    /// Appends an interval; a back-to-back interval of the same process extends the newest one.
    pub fn push(&mut self, iv: Interval) {
        let cap = self.buf.len();
        if cap == 0 {
            return;
        }
        if *self.len > 0 {
            let last = (*self.head as usize + cap - 1) % cap;
            let l = &mut self.buf[last];
            if l.slot == iv.slot && l.pid == iv.pid && iv.start <= l.end {
                l.end = l.end.max(iv.end);
                return;
            }
        }
        self.buf[*self.head as usize] = iv;
        *self.head = ((*self.head as usize + 1) % cap) as u32;
        if (*self.len as usize) < cap {
            *self.len += 1;
        }
    }

    /// The ring read-only.
    pub fn view(&self) -> RingView<'_> {
        RingView {
            buf: self.buf,
            head: *self.head,
            len: *self.len,
        }
    }

    /// Intervals from newest to oldest.
    pub fn newest_first(&self) -> impl Iterator<Item = Interval> + '_ {
        self.view().newest_first()
    }

    /// Start of the oldest interval still held when the ring is full (older history is
    /// lost); `None` while nothing has been overwritten.
    pub fn coverage_start(&self) -> Option<u64> {
        self.view().coverage_start()
    }
}

/// A ring of intervals read through a shared borrow (queries need no write access).
#[derive(Clone, Copy)]
pub struct RingView<'a> {
    buf: &'a [Interval],
    head: u32,
    len: u32,
}

impl<'a> RingView<'a> {
    /// Reads storage laid out as [`Ring`] keeps it; out-of-range `head`/`len` are clamped
    /// as [`Ring::new`] clamps them (here without writing them back).
    pub fn new(buf: &'a [Interval], head: u32, len: u32) -> RingView<'a> {
        let cap = buf.len() as u32;
        RingView {
            buf,
            head: if head >= cap { 0 } else { head },
            len: len.min(cap),
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Intervals from newest to oldest.
    pub fn newest_first(self) -> impl Iterator<Item = Interval> + 'a {
        let cap = self.buf.len();
        let head = self.head as usize;
        let buf = self.buf;
        (0..self.len()).map(move |k| buf[(head + cap - 1 - k) % cap])
    }

    /// Start of the oldest interval still held when the ring is full (older history is
    /// lost); `None` while nothing has been overwritten.
    pub fn coverage_start(self) -> Option<u64> {
        (self.len() == self.buf.len()).then(|| self.newest_first().last().map(|i| i.start))?
    }
}

/// Busy nanoseconds within `[t0, t1)` of the intervals accepted by `filter`. Intervals must
/// come newest first (starts decreasing), as [`Ring::newest_first`] yields them.
pub fn busy_in_window(
    newest_first: impl Iterator<Item = Interval>,
    t0: u64,
    t1: u64,
    mut filter: impl FnMut(&Interval) -> bool,
) -> u64 {
    let mut busy = 0;
    for iv in newest_first {
        if iv.end <= t0 {
            break;
        }
        if !filter(&iv) {
            continue;
        }
        let s = iv.start.max(t0);
        let e = iv.end.min(t1);
        if e > s {
            busy += e - s;
        }
    }
    busy
}

/// `busy / window` as a rounded percentage, clamped to 0..=100.
pub fn percent(busy: u64, window: u64) -> u32 {
    if window == 0 {
        return 0;
    }
    (((busy as u128 * 100 + window as u128 / 2) / window as u128).min(100)) as u32
}

/// Utilization over the `window` ns before `now`: the window is shortened to what the ring
/// still covers, so a full ring never reads as idle time.
pub fn utilization(
    ring: RingView<'_>,
    now: u64,
    window: u64,
    filter: impl FnMut(&Interval) -> bool,
) -> u32 {
    let mut t0 = now.saturating_sub(window);
    if let Some(c) = ring.coverage_start() {
        t0 = t0.max(c);
    }
    let busy = busy_in_window(ring.newest_first(), t0, now, filter);
    percent(busy, now.saturating_sub(t0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: u64, end: u64, slot: u32) -> Interval {
        Interval {
            start,
            end,
            pid: 100 + slot,
            slot,
        }
    }

    #[test]
    fn scheduling_serializes() {
        assert_eq!(schedule(100, 0, 0, 10), (100, 110));
        assert_eq!(schedule(100, 150, 0, 10), (150, 160));
        assert_eq!(schedule(100, 150, 200, 10), (200, 210));
        assert_eq!(schedule(5, 0, 0, u64::MAX), (5, u64::MAX));
    }

    #[test]
    fn ring_coalesces_and_wraps() {
        let mut buf = [Interval::default(); 4];
        let (mut head, mut len) = (0, 0);
        let mut r = Ring::new(&mut buf, &mut head, &mut len);
        r.push(iv(0, 10, 1));
        r.push(iv(10, 20, 1)); // back-to-back same process: merged
        assert_eq!(r.len(), 1);
        r.push(iv(20, 30, 2));
        r.push(iv(35, 40, 2)); // gap: new interval
        assert_eq!(r.len(), 3);
        assert_eq!(r.coverage_start(), None);
        r.push(iv(40, 50, 1));
        r.push(iv(50, 60, 2));
        assert_eq!(r.len(), 4);
        let all: Vec<_> = r.newest_first().collect();
        assert_eq!(all[0], iv(50, 60, 2));
        assert_eq!(all[3], iv(20, 30, 2));
        assert_eq!(r.coverage_start(), Some(20));
    }

    #[test]
    fn window_math() {
        let mut buf = [Interval::default(); 16];
        let (mut head, mut len) = (0, 0);
        let mut r = Ring::new(&mut buf, &mut head, &mut len);
        // slot 1 busy 0..250, slot 2 busy 500..750, slot 1 queued 900..1200 (partly future)
        r.push(iv(0, 250, 1));
        r.push(iv(500, 750, 2));
        r.push(iv(900, 1200, 1));
        let now = 1000;
        assert_eq!(busy_in_window(r.newest_first(), 0, now, |_| true), 600);
        assert_eq!(
            busy_in_window(r.newest_first(), 0, now, |i| i.slot == 1),
            350
        );
        assert_eq!(
            busy_in_window(r.newest_first(), 600, now, |i| i.slot == 2),
            150
        );
        assert_eq!(utilization(r.view(), now, 1000, |_| true), 60);
        assert_eq!(utilization(r.view(), now, 500, |_| true), 70);
        assert_eq!(utilization(r.view(), 5000, 1000, |_| true), 0);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 0), 0);
        assert_eq!(percent(10, 5), 100);
    }

    #[test]
    fn full_ring_shortens_window() {
        let mut buf = [Interval::default(); 2];
        let (mut head, mut len) = (0, 0);
        let mut r = Ring::new(&mut buf, &mut head, &mut len);
        r.push(iv(0, 100, 1));
        r.push(iv(800, 900, 2));
        r.push(iv(900, 1000, 1));
        // history before 800 is lost: the window is [800, 1000), fully busy
        assert_eq!(utilization(r.view(), 1000, 1000, |_| true), 100);
    }
}
