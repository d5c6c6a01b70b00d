//! AMD-only facts of the simulated AMD Instinct models, and device identities as ROCr,
//! HIP, rocm-smi and amd-smi report them. The models themselves are rows of
//! [`crate::config::MODELS`]; a state file made with an AMD model is an AMD machine.

/// What an AMD model adds to its [`crate::config::ModelSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdSpec {
    pub key: &'static str,
    /// The ISA target id `gcnArchName` reports.
    pub gcn_arch_name: &'static str,
    /// The deprecated numeric `gcnArch` (gfx942 -> 942).
    pub gcn_arch: i32,
    /// The gfx target as hex digits, as amdsmi's `target_graphics_version` carries it
    /// (gfx942 -> 0x942, printed back as `gfx942`).
    pub gfx_target_version: u32,
    /// The KFD "market name" the SMI tools print.
    pub market_name: &'static str,
    pub wavefront: u32,
    /// XCDs per device (MI300X: 8).
    pub xccs: u32,
}

pub const AMD_MODELS: &[AmdSpec] = &[
    AmdSpec {
        key: "mi300x",
        gcn_arch_name: "gfx942:sramecc+:xnack-",
        gcn_arch: 942,
        gfx_target_version: 0x942,
        market_name: "AMD Instinct MI300X",
        wavefront: 64,
        xccs: 8,
    },
    AmdSpec {
        key: "mi210",
        gcn_arch_name: "gfx90a:sramecc+:xnack-",
        gcn_arch: 910,
        gfx_target_version: 0x90A,
        market_name: "AMD Instinct MI210",
        wavefront: 64,
        xccs: 1,
    },
];

/// The AMD facts of `model_key`, or `None` for a non-AMD model.
pub fn amd_spec(model_key: &str) -> Option<&'static AmdSpec> {
    AMD_MODELS.iter().find(|m| m.key == model_key)
}

/// The model the AMD libraries create a machine with when `VGPU_SIM_MODEL` is unset.
pub const DEFAULT_AMD_MODEL: &str = "mi300x";

/// The machine configuration the AMD libraries create a state file with:
/// [`SimConfig::from_env`](crate::config::SimConfig::from_env), but an MI300X unless
/// `VGPU_SIM_MODEL` names another model.
pub fn sim_config_from_env() -> (crate::config::SimConfig, Vec<String>) {
    sim_config_from_lookup(|k| std::env::var(k).ok())
}

/// [`sim_config_from_env`] over any lookup: an unset, empty or unknown model is an MI300X.
pub fn sim_config_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> (crate::config::SimConfig, Vec<String>) {
    let extra = std::cell::RefCell::new(Vec::new());
    let (cfg, mut w) = crate::config::SimConfig::from_lookup(|k| {
        let v = get(k);
        if k != "VGPU_SIM_MODEL" {
            return v;
        }
        match v.as_deref().map(str::trim) {
            None | Some("") => Some(DEFAULT_AMD_MODEL.to_string()),
            Some(m) if crate::config::model(m).is_none() => {
                extra.borrow_mut().push(format!(
                    "VGPU_SIM_MODEL={m:?} is unknown; using {DEFAULT_AMD_MODEL}"
                ));
                Some(DEFAULT_AMD_MODEL.to_string())
            }
            Some(_) => v,
        }
    });
    w.extend(extra.into_inner());
    (cfg, w)
}

/// The 64-bit unique id of a device (`rsmi_dev_unique_id_get`, the digits of ROCr's UUID),
/// taken from the device's 16 identity bytes.
pub fn unique_id(uuid: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&uuid[..8]);
    u64::from_be_bytes(b)
}

/// ROCr's UUID: `GPU-` and 16 lower-case hex digits of the unique id (what
/// `ROCR_VISIBLE_DEVICES` accepts and `rocminfo` prints).
pub fn rocr_uuid(uuid: &[u8; 16]) -> String {
    format!("GPU-{:016x}", unique_id(uuid))
}

/// `hipDeviceGetUuid`'s 16 bytes: the ASCII hex digits that follow `GPU-` in ROCr's UUID.
pub fn hip_uuid_bytes(uuid: &[u8; 16]) -> [u8; 16] {
    let s = format!("{:016x}", unique_id(uuid));
    let mut out = [0u8; 16];
    out.copy_from_slice(s.as_bytes());
    out
}

/// amd-smi's UUID form: 8-4-4-4-12 hex digits with the PCI device id in the first group and
/// the unique id's bytes spread over the rest (`xxxx74a1-xx00-1000-80xx-xxxxxxxxxxxx`).
pub fn amdsmi_uuid(uuid: &[u8; 16], pci_device_id: u32) -> String {
    let u = unique_id(uuid).to_be_bytes();
    format!(
        "{:02x}{:02x}{:04x}-{:02x}00-1000-80{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u[0],
        u[1],
        pci_device_id & 0xFFFF,
        u[2],
        u[3],
        u[4],
        u[5],
        u[6],
        u[7],
        uuid[8],
        uuid[9]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model;
    use crate::ids::uuid_bytes;

    #[test]
    fn every_amd_spec_has_a_model_row() {
        for a in AMD_MODELS {
            let m = model(a.key).expect("model row");
            assert!(m.name.starts_with("AMD Instinct"));
        }
        assert!(amd_spec("h100").is_none());
        let m = model(DEFAULT_AMD_MODEL).unwrap();
        assert_eq!((m.sms, m.mem_bytes), (304, 192 << 30));
    }

    #[test]
    fn amd_libraries_default_to_an_mi300x() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let (c, w) = sim_config_from_lookup(env(&[]));
        assert_eq!((c.model.key, w.len()), ("mi300x", 0));
        let (c, w) = sim_config_from_lookup(env(&[("VGPU_SIM_MODEL", "mi210")]));
        assert_eq!((c.model.key, w.len()), ("mi210", 0));
        let (c, w) = sim_config_from_lookup(env(&[("VGPU_SIM_MODEL", "h100")]));
        assert_eq!(
            (c.model.key, w.len()),
            ("h100", 0),
            "an explicit NVIDIA model is honoured"
        );
        let (c, w) = sim_config_from_lookup(env(&[("VGPU_SIM_MODEL", "mi999")]));
        assert_eq!(c.model.key, "mi300x");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("using mi300x"), "{w:?}");
    }

    #[test]
    fn identities_agree() {
        let b = uuid_bytes("mi300x", 0);
        let rocr = rocr_uuid(&b);
        assert_eq!(rocr.len(), 4 + 16);
        let hip = hip_uuid_bytes(&b);
        assert_eq!(&rocr.as_bytes()[4..], &hip);
        assert_eq!(u64::from_str_radix(&rocr[4..], 16).unwrap(), unique_id(&b));
        let s = amdsmi_uuid(&b, 0x74a1);
        let lens: Vec<usize> = s.split('-').map(str::len).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12]);
        assert_eq!(&s[4..8], "74a1");
        assert_ne!(rocr_uuid(&uuid_bytes("mi300x", 1)), rocr);
    }
}
