//! Randomised headers and `/proc/<pid>/stat` texts: classification and parsing never panic,
//! and only a header carrying both magics, the right versions and sizes is ever `Valid`.

use shm_layout::{
    classify, parse_proc_stat, HeaderView, RegionStatus, EXT_MAGIC, EXT_PROBE_LEN, HAMI_MAGIC,
    REGION_SIZE, V1_PROBE_LEN,
};

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_headers_classify_without_panicking() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut valid = 0;
    for round in 0..100_000u64 {
        let mut v1 = [0u8; V1_PROBE_LEN];
        let mut ext = [0u8; EXT_PROBE_LEN];
        v1.iter_mut().for_each(|b| *b = rng.next() as u8);
        ext.iter_mut().for_each(|b| *b = rng.next() as u8);
        // Half of the rounds start from the right magics so deeper rules are reached too.
        if round % 2 == 0 {
            v1[..4].copy_from_slice(&HAMI_MAGIC.to_le_bytes());
            v1[4..8].copy_from_slice(&1i32.to_le_bytes());
            ext[..8].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        }
        let len = match rng.next() % 4 {
            0 => 0,
            1 => rng.next() % (REGION_SIZE as u64 * 2),
            _ => REGION_SIZE as u64,
        };
        let header = HeaderView::from_bytes(&v1, &ext);
        let status = classify(len, &header, rng.next() % 3);
        if status == RegionStatus::Valid {
            valid += 1;
            assert_eq!(header.magic, HAMI_MAGIC);
            assert!(len >= REGION_SIZE as u64);
        }
        // Short or empty probes (a truncated file read with pread) are handled too.
        let cut = (rng.next() % V1_PROBE_LEN as u64) as usize;
        let _ = classify(len, &HeaderView::from_bytes(&v1[..cut], &ext[..cut]), 0);
    }
    // The random ext header almost never matches every size field: Valid stays rare.
    assert!(valid < 100, "{valid} random headers classified Valid");
}

#[test]
fn random_proc_stat_texts_parse_without_panicking() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let pieces = [
        "(",
        ")",
        " ",
        "S",
        "Z",
        "R",
        "123",
        "-1",
        "x y",
        "99999999999999999999999",
        "\n",
    ];
    for _ in 0..100_000 {
        let n = (rng.next() % 40) as usize;
        let text: String = (0..n)
            .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize])
            .collect();
        if let Some(stat) = parse_proc_stat(&text) {
            assert!(text.contains(')'));
            assert!(!stat.state.is_whitespace());
        }
    }
    let real = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
    assert_eq!(
        parse_proc_stat(real).map(|s| (s.state, s.start_time)),
        Some(('S', 987654))
    );
}
