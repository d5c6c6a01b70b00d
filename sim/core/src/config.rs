//! Device models, sizes and the simulator's environment variables.
//!
//! Machine-wide settings (`VGPU_SIM_DEVICES`, `VGPU_SIM_MODEL`, `VGPU_SIM_MEMORY`) are read by
//! the process that creates the state file and fixed there; per-process costs
//! (`VGPU_SIM_CONTEXT_BYTES`, `VGPU_SIM_MODULE_BYTES`, `VGPU_SIM_KERNEL_NS`,
//! `VGPU_SIM_NS_PER_BLOCK`) are read by every process for itself.

/// Most devices one state file describes: as many as a container can address (the shared
/// region's per-device arrays), so every simulated device can be given to one container.
pub use vgpu_policy::MAX_DEVICES;

use vgpu_policy::config::parse_size_or_error;

const MIB: u64 = 1 << 20;

/// A GPU model the simulator can pretend to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used in `VGPU_SIM_MODEL`.
    pub key: &'static str,
    /// Marketing name (`cuDeviceGetName`, `nvmlDeviceGetName`).
    pub name: &'static str,
    pub sms: u32,
    pub threads_per_sm: u32,
    pub cc_major: u32,
    pub cc_minor: u32,
    pub mem_bytes: u64,
    pub clock_khz: u32,
    pub mem_clock_khz: u32,
    pub bus_width: u32,
    pub l2_bytes: u32,
    pub smem_per_sm: u32,
    pub smem_optin: u32,
    /// PCI device id (the upper half of NVML's `pciDeviceId`; vendor 0x10DE is the lower).
    pub pci_device_id: u32,
    pub pci_subsystem_id: u32,
    /// Board power limit in watts.
    pub power_w: u32,
}

/// The models offered by `VGPU_SIM_MODEL`.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        key: "h100",
        name: "NVIDIA H100 80GB HBM3",
        sms: 132,
        threads_per_sm: 2048,
        cc_major: 9,
        cc_minor: 0,
        mem_bytes: 81559 * MIB,
        clock_khz: 1_980_000,
        mem_clock_khz: 2_619_000,
        bus_width: 5120,
        l2_bytes: 52_428_800,
        smem_per_sm: 233_472,
        smem_optin: 232_448,
        pci_device_id: 0x2330,
        pci_subsystem_id: 0x16C1,
        power_w: 700,
    },
    ModelSpec {
        key: "a100-40gb",
        name: "NVIDIA A100-SXM4-40GB",
        sms: 108,
        threads_per_sm: 2048,
        cc_major: 8,
        cc_minor: 0,
        mem_bytes: 40960 * MIB,
        clock_khz: 1_410_000,
        mem_clock_khz: 1_215_000,
        bus_width: 5120,
        l2_bytes: 41_943_040,
        smem_per_sm: 167_936,
        smem_optin: 166_912,
        pci_device_id: 0x20B0,
        pci_subsystem_id: 0x134F,
        power_w: 400,
    },
    ModelSpec {
        key: "a100-80gb",
        name: "NVIDIA A100-SXM4-80GB",
        sms: 108,
        threads_per_sm: 2048,
        cc_major: 8,
        cc_minor: 0,
        mem_bytes: 81920 * MIB,
        clock_khz: 1_410_000,
        mem_clock_khz: 1_593_000,
        bus_width: 5120,
        l2_bytes: 41_943_040,
        smem_per_sm: 167_936,
        smem_optin: 166_912,
        pci_device_id: 0x20B2,
        pci_subsystem_id: 0x1463,
        power_w: 400,
    },
    ModelSpec {
        key: "l4",
        name: "NVIDIA L4",
        sms: 58,
        threads_per_sm: 1536,
        cc_major: 8,
        cc_minor: 9,
        mem_bytes: 23034 * MIB,
        clock_khz: 2_040_000,
        mem_clock_khz: 6_251_000,
        bus_width: 192,
        l2_bytes: 50_331_648,
        smem_per_sm: 102_400,
        smem_optin: 101_376,
        pci_device_id: 0x27B8,
        pci_subsystem_id: 0x16CA,
        power_w: 72,
    },
    // AMD Instinct models (the simulated libamdhip64 / SMI libraries; `crate::amd` holds
    // their AMD-only facts). `sms` are compute units, `cc_*` what HIP reports as
    // major/minor (gfx942 -> 9.4), `smem_per_sm` the LDS size.
    ModelSpec {
        key: "mi300x",
        name: "AMD Instinct MI300X",
        sms: 304,
        threads_per_sm: 2048,
        cc_major: 9,
        cc_minor: 4,
        mem_bytes: 196_608 * MIB,
        clock_khz: 2_100_000,
        mem_clock_khz: 1_300_000,
        bus_width: 8192,
        l2_bytes: 4_194_304,
        smem_per_sm: 65_536,
        smem_optin: 65_536,
        pci_device_id: 0x74A1,
        pci_subsystem_id: 0x74A1,
        power_w: 750,
    },
    ModelSpec {
        key: "mi210",
        name: "AMD Instinct MI210",
        sms: 104,
        threads_per_sm: 2048,
        cc_major: 9,
        cc_minor: 0,
        mem_bytes: 65_536 * MIB,
        clock_khz: 1_700_000,
        mem_clock_khz: 1_600_000,
        bus_width: 4096,
        l2_bytes: 8_388_608,
        smem_per_sm: 65_536,
        smem_optin: 65_536,
        pci_device_id: 0x740F,
        pci_subsystem_id: 0x0C34,
        power_w: 300,
    },
];

/// Looks a model up by key (case-insensitive; `h100-80gb` and `h100-sxm` are aliases of `h100`).
pub fn model(key: &str) -> Option<&'static ModelSpec> {
    let k = key.trim().to_ascii_lowercase();
    let k = match k.as_str() {
        "h100-80gb" | "h100-sxm" | "h100-80gb-hbm3" => "h100",
        "a100" | "a100-sxm4-40gb" => "a100-40gb",
        "a100-sxm4-80gb" => "a100-80gb",
        other => other,
    };
    MODELS.iter().find(|m| m.key == k)
}

/// Parses a plain unsigned decimal integer (no sign, no suffix).
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a non-negative integer: {s:?}"));
    }
    t.parse()
        .map_err(|_| format!("integer out of range: {s:?}"))
}

/// The machine-wide configuration a new state file is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub devices: u32,
    pub model: &'static ModelSpec,
    pub mem_bytes: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        let model = &MODELS[0];
        SimConfig {
            devices: 1,
            model,
            mem_bytes: model.mem_bytes,
        }
    }
}

impl SimConfig {
    /// Builds the configuration from an environment lookup. Bad values produce one warning
    /// each (returned, for the caller to print) and fall back to the default for that knob.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (SimConfig, Vec<String>) {
        let mut warnings = Vec::new();
        let mut cfg = SimConfig::default();
        if let Some(v) = get("VGPU_SIM_MODEL") {
            match model(&v) {
                Some(m) => {
                    cfg.model = m;
                    cfg.mem_bytes = m.mem_bytes;
                }
                None => {
                    let keys: Vec<_> = MODELS.iter().map(|m| m.key).collect();
                    warnings.push(format!(
                        "VGPU_SIM_MODEL={v:?} is unknown (known: {}); using h100",
                        keys.join(", ")
                    ));
                }
            }
        }
        if let Some(v) = get("VGPU_SIM_DEVICES") {
            match parse_u64(&v) {
                Ok(n) if n <= MAX_DEVICES as u64 => cfg.devices = n as u32,
                Ok(_) => {
                    warnings.push(format!(
                        "VGPU_SIM_DEVICES={v:?} is above {MAX_DEVICES}; using {MAX_DEVICES}"
                    ));
                    cfg.devices = MAX_DEVICES as u32;
                }
                Err(e) => warnings.push(format!("VGPU_SIM_DEVICES: {e}; using 1")),
            }
        }
        if let Some(v) = get("VGPU_SIM_MEMORY") {
            match parse_size_or_error(&v) {
                Ok(n) if n >= MIB => cfg.mem_bytes = n,
                Ok(_) => warnings.push(format!(
                    "VGPU_SIM_MEMORY={v:?} is below 1 MiB; using the model's memory"
                )),
                Err(e) => warnings.push(format!("VGPU_SIM_MEMORY: {e}; using the model's memory")),
            }
        }
        (cfg, warnings)
    }

    /// [`SimConfig::from_lookup`] over the process environment.
    pub fn from_env() -> (SimConfig, Vec<String>) {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// Per-process costs of the simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    /// Device memory a context costs while it exists (`VGPU_SIM_CONTEXT_BYTES`, default 300 MiB).
    pub context_bytes: u64,
    /// Device memory a loaded module costs (`VGPU_SIM_MODULE_BYTES`, default 2 MiB).
    pub module_bytes: u64,
    /// Device time of one kernel (`VGPU_SIM_KERNEL_NS`, default 10000).
    pub kernel_ns: u64,
    /// Extra device time per grid block (`VGPU_SIM_NS_PER_BLOCK`, default 0).
    pub ns_per_block: u64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            context_bytes: 300 * MIB,
            module_bytes: 2 * MIB,
            kernel_ns: 10_000,
            ns_per_block: 0,
        }
    }
}

impl Costs {
    /// Reads the costs through `get`; bad values give a warning and the default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (Costs, Vec<String>) {
        let mut c = Costs::default();
        let mut warnings = Vec::new();
        let mut size = |name: &str, slot: &mut u64| {
            if let Some(v) = get(name) {
                match parse_size_or_error(&v) {
                    Ok(n) => *slot = n,
                    Err(e) => warnings.push(format!("{name}: {e}; using the default {}", *slot)),
                }
            }
        };
        size("VGPU_SIM_CONTEXT_BYTES", &mut c.context_bytes);
        size("VGPU_SIM_MODULE_BYTES", &mut c.module_bytes);
        let mut int = |name: &str, slot: &mut u64| {
            if let Some(v) = get(name) {
                match parse_u64(&v) {
                    Ok(n) => *slot = n,
                    Err(e) => warnings.push(format!("{name}: {e}; using the default {}", *slot)),
                }
            }
        };
        int("VGPU_SIM_KERNEL_NS", &mut c.kernel_ns);
        int("VGPU_SIM_NS_PER_BLOCK", &mut c.ns_per_block);
        (c, warnings)
    }

    /// [`Costs::from_lookup`] over the process environment.
    pub fn from_env() -> (Costs, Vec<String>) {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Device time of one kernel launch with `blocks` grid blocks.
    pub fn kernel_cost(&self, blocks: u64) -> u64 {
        self.kernel_ns
            .saturating_add(self.ns_per_block.saturating_mul(blocks))
    }

    /// Whether every launch is free (the zero-cost fast path).
    pub fn zero(&self) -> bool {
        self.kernel_ns == 0 && self.ns_per_block == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn default_model_is_h100() {
        let (c, w) = SimConfig::from_lookup(env(&[]));
        assert!(w.is_empty());
        assert_eq!(c.devices, 1);
        assert_eq!(c.model.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(c.mem_bytes, 85_520_809_984);
        assert_eq!(c.model.sms, 132);
    }

    #[test]
    fn env_overrides_and_bad_values() {
        let (c, w) = SimConfig::from_lookup(env(&[
            ("VGPU_SIM_MODEL", "A100-40GB"),
            ("VGPU_SIM_DEVICES", "4"),
            ("VGPU_SIM_MEMORY", "16g"),
        ]));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!((c.devices, c.model.sms, c.mem_bytes), (4, 108, 16 << 30));
        let (c, w) = SimConfig::from_lookup(env(&[
            ("VGPU_SIM_MODEL", "v100"),
            ("VGPU_SIM_DEVICES", "two"),
            ("VGPU_SIM_MEMORY", "lots"),
        ]));
        assert_eq!(w.len(), 3);
        assert_eq!(c, SimConfig::default());
        let (c, w) = SimConfig::from_lookup(env(&[("VGPU_SIM_DEVICES", "64")]));
        assert_eq!((c.devices, w.len()), (16, 1));
    }

    #[test]
    fn costs() {
        let (c, w) = Costs::from_lookup(env(&[]));
        assert!(w.is_empty());
        assert_eq!(c.context_bytes, 300 << 20);
        assert_eq!(c.module_bytes, 2 << 20);
        assert_eq!(c.kernel_cost(1000), 10_000);
        assert!(!c.zero());
        let (c, w) = Costs::from_lookup(env(&[
            ("VGPU_SIM_KERNEL_NS", "0"),
            ("VGPU_SIM_NS_PER_BLOCK", "5"),
            ("VGPU_SIM_CONTEXT_BYTES", "0"),
        ]));
        assert!(w.is_empty());
        assert_eq!(c.kernel_cost(10), 50);
        assert_eq!(c.context_bytes, 0);
        let (c, w) = Costs::from_lookup(env(&[("VGPU_SIM_KERNEL_NS", "-3")]));
        assert_eq!((c.kernel_ns, w.len()), (10_000, 1));
    }
}
