//! Device identities: UUIDs, PCI bus ids, and `CUDA_VISIBLE_DEVICES` parsing.

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The 16 UUID bytes of device `index` of model `model_key`: deterministic, distinct per
/// index and model, stable across runs and machines.
pub fn uuid_bytes(model_key: &str, index: u32) -> [u8; 16] {
    let seed = fnv1a(model_key.as_bytes()) ^ (index as u64).wrapping_mul(0x1000_0000_01b3);
    let a = splitmix64(seed);
    let b = splitmix64(a ^ 0x5655_4750_5553_494d); // "VGPUSIM"
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (lower-case hex, as nvidia-smi prints it).
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The PCI bus number of device `index` (a DGX H100-like layout, then distinct numbers).
pub fn pci_bus(index: u32) -> u32 {
    const DGX: [u32; 8] = [0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB];
    DGX.get(index as usize).copied().unwrap_or(0xE0 + index)
}

/// NVML form: `00000000:18:00.0`.
pub fn pci_bus_id(index: u32) -> String {
    format!("{:08X}:{:02X}:00.0", 0, pci_bus(index))
}

/// Legacy / CUDA form: `0000:18:00.0`.
pub fn pci_bus_id_legacy(index: u32) -> String {
    format!("{:04X}:{:02X}:00.0", 0, pci_bus(index))
}

/// Parses `[domain:]bus:device.function` (hex, any case) into `(domain, bus, device, function)`.
pub fn parse_pci_bus_id(s: &str) -> Option<(u32, u32, u32, u32)> {
    let s = s.trim();
    let (head, func) = s.rsplit_once('.')?;
    let parts: Vec<&str> = head.split(':').collect();
    let (dom, bus, dev) = match parts.as_slice() {
        [d, b, v] => (*d, *b, *v),
        [b, v] => ("0", *b, *v),
        _ => return None,
    };
    let hex = |t: &str| -> Option<u32> {
        if t.is_empty() || t.len() > 8 {
            return None;
        }
        u32::from_str_radix(t, 16).ok()
    };
    Some((hex(dom)?, hex(bus)?, hex(dev)?, hex(func)?))
}

/// Applies `CUDA_VISIBLE_DEVICES` the way the CUDA driver does: a comma-separated list of
/// device indices or `GPU-` UUID prefixes; the first invalid, unknown, ambiguous or repeated
/// entry ends the list (everything after it is ignored); `MIG-` entries are not supported by
/// the simulator and also end the list. `None` (unset) means all devices in order.
/// Returns physical device indices in CUDA ordinal order.
pub fn parse_visible_devices(value: Option<&str>, uuids: &[String]) -> Vec<usize> {
    let Some(value) = value else {
        return (0..uuids.len()).collect();
    };
    let mut out: Vec<usize> = Vec::new();
    for raw in value.split(',') {
        let e = raw.trim();
        let idx = if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) {
            match e.parse::<usize>() {
                Ok(i) if i < uuids.len() => Some(i),
                _ => None,
            }
        } else if e.len() > 4 && e[..4].eq_ignore_ascii_case("GPU-") {
            let want = e.to_ascii_lowercase();
            let hits: Vec<usize> = uuids
                .iter()
                .enumerate()
                .filter(|(_, u)| u.to_ascii_lowercase().starts_with(&want))
                .map(|(i, _)| i)
                .collect();
            if hits.len() == 1 {
                Some(hits[0])
            } else {
                None
            }
        } else {
            None
        };
        match idx {
            Some(i) if !out.contains(&i) => out.push(i),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids(n: u32) -> Vec<String> {
        (0..n)
            .map(|i| format_uuid(&uuid_bytes("h100", i)))
            .collect()
    }

    #[test]
    fn uuid_format_and_stability() {
        let a = uuid_bytes("h100", 0);
        assert_eq!(a, uuid_bytes("h100", 0));
        assert_ne!(a, uuid_bytes("h100", 1));
        assert_ne!(a, uuid_bytes("a100-40gb", 0));
        let s = format_uuid(&a);
        assert_eq!(s.len(), 40);
        assert!(s.starts_with("GPU-"));
        let groups: Vec<usize> = s[4..].split('-').map(|g| g.len()).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        // bytes and string agree
        let hex: String = s[4..].chars().filter(|c| *c != '-').collect();
        let back: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(back, a.to_vec());
    }

    #[test]
    fn pci_ids() {
        assert_eq!(pci_bus_id(0), "00000000:18:00.0");
        assert_eq!(pci_bus_id_legacy(1), "0000:2A:00.0");
        let all: Vec<u32> = (0..16).map(pci_bus).collect();
        let mut d = all.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 16);
        assert_eq!(parse_pci_bus_id("00000000:18:00.0"), Some((0, 0x18, 0, 0)));
        assert_eq!(parse_pci_bus_id("0000:2a:00.0"), Some((0, 0x2a, 0, 0)));
        assert_eq!(parse_pci_bus_id("2a:00.0"), Some((0, 0x2a, 0, 0)));
        assert_eq!(parse_pci_bus_id("zz:00.0"), None);
        assert_eq!(parse_pci_bus_id("18:00"), None);
    }

    #[test]
    fn visible_devices() {
        let u = uuids(4);
        assert_eq!(parse_visible_devices(None, &u), vec![0, 1, 2, 3]);
        assert_eq!(parse_visible_devices(Some(""), &u), Vec::<usize>::new());
        assert_eq!(parse_visible_devices(Some("2,0"), &u), vec![2, 0]);
        assert_eq!(parse_visible_devices(Some(" 1 , 3 "), &u), vec![1, 3]);
        assert_eq!(parse_visible_devices(Some("1,7,2"), &u), vec![1]);
        assert_eq!(parse_visible_devices(Some("1,1,2"), &u), vec![1]);
        assert_eq!(parse_visible_devices(Some("-1,2"), &u), Vec::<usize>::new());
        assert_eq!(parse_visible_devices(Some("0,abc,2"), &u), vec![0]);
        let full = u[3].clone();
        let prefix = &u[2][..12];
        assert_eq!(
            parse_visible_devices(Some(&format!("{full},{prefix}")), &u),
            vec![3, 2]
        );
        assert_eq!(
            parse_visible_devices(Some(&full.to_ascii_uppercase().replace("GPU-", "gpu-")), &u),
            vec![3]
        );
        // "GPU-" alone matches everything: ambiguous
        assert_eq!(
            parse_visible_devices(Some("GPU-,0"), &u),
            Vec::<usize>::new()
        );
        assert_eq!(
            parse_visible_devices(Some("MIG-1234,0"), &u),
            Vec::<usize>::new()
        );
        assert_eq!(parse_visible_devices(Some("0,GPU-ffffffff"), &u), vec![0]);
    }
}
