//! The environment contract (DESIGN §2), parsed into a typed [`Config`].
//!
//! Pure: [`Config::from_lookup`] takes a lookup function instead of reading the process
//! environment, so every rule is unit-tested. Parsing never panics.
//!
//! Invalid values fail **closed**: a malformed memory limit caps that device at 0 bytes
//! (every allocation is refused with the API's out-of-memory code), a malformed core limit
//! caps it at 1 %. The reason: the variable exists because an operator meant to limit the
//! container; silently ignoring it would hand out the whole GPU, and refusing to start
//! would break every process of the container, including ones that never touch the GPU.
//! Each problem is reported as one line on stderr naming the variable and the value.

pub use crate::device::MAX_DEVICES;
use crate::device::{ContainerIndex, Ordinal};

/// `GPU_CORE_UTILIZATION_POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorePolicy {
    /// Follow the node monitor's `utilization_switch`.
    Default,
    /// Always cap, also when the container is alone on the GPU.
    Force,
    /// Never cap.
    Disable,
}

/// One configuration problem, reported once on stderr (the log writer adds `vgpu[pid]: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub variable: String,
    pub value: String,
    pub consequence: &'static str,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid {}={:?}: {}",
            self.variable, self.value, self.consequence
        )
    }
}

/// The typed environment contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Memory cap per container device index, in bytes; `None` = uncapped.
    pub memory_limit: [Option<u64>; MAX_DEVICES],
    /// Core cap per container device index, in percent (1..=99); `None` = uncapped.
    pub sm_limit: [Option<u32>; MAX_DEVICES],
    /// `CUDA_DEVICE_MEMORY_SHARED_CACHE`: the shared region's path.
    pub shared_cache: String,
    pub core_policy: CorePolicy,
    /// `CUDA_TASK_PRIORITY`: lower = higher priority.
    pub task_priority: i32,
    /// `CUDA_OVERSUBSCRIBE=true`: the slice may exceed the physical card.
    pub oversubscribe: bool,
    /// `LIBCUDA_LOG_LEVEL`: 0 errors .. 4 debug.
    pub log_level: u8,
    /// `CUDA_DISABLE_CONTROL=true`: forward everything, enforce nothing.
    pub control_disabled: bool,
    /// `CUDA_VISIBLE_DEVICES` as given (indices or UUIDs), if set.
    pub visible_devices: Option<String>,
    /// `NVIDIA_VISIBLE_DEVICES` when it lists UUIDs (HAMi's device plugin: the allocated
    /// GPUs, in the order of its `_<i>` limits): limit `_<i>` then belongs to the device
    /// with the i-th UUID, whatever the driver's enumeration order or the application's
    /// `CUDA_VISIBLE_DEVICES`. `None`: limits are indexed by NVML's device order. When
    /// `NVIDIA_VISIBLE_DEVICES` is unset, `ROCR_VISIBLE_DEVICES`' UUIDs (HAMi's
    /// amd-device-plugin), for HIP processes only: see [`Config::limit_uuids_for`].
    pub limit_uuids: Option<Vec<String>>,
    /// `limit_uuids` came from `ROCR_VISIBLE_DEVICES` (ROCr UUIDs, which name no CUDA device).
    pub limit_uuids_are_rocr: bool,
    /// Problems found while parsing, to be reported once.
    pub issues: Vec<ConfigIssue>,
}

pub const DEFAULT_SHARED_CACHE: &str = "/tmp/cudevshr.cache";
pub const DEFAULT_LOG_LEVEL: u8 = 2;

/// Parses a byte size: decimal digits with an optional suffix k/m/g/t (x1024^n, case
/// insensitive, an optional trailing `b`/`ib` accepted: `3000m`, `3G`, `512MiB`). Leading
/// zeros are decimal, never octal. Returns `None` for anything else, including overflow
/// ([`parse_size_or_error`] says which).
pub fn parse_size(text: &str) -> Option<u64> {
    parse_size_or_error(text).ok()
}

/// Why a text is not a byte size (see [`parse_size`]); its `Display` names the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// No leading decimal digit.
    NotASize(String),
    /// A suffix other than k/m/g/t (with an optional `b`/`ib`).
    BadSuffix(String),
    /// More than `u64::MAX` bytes.
    OutOfRange(String),
}

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeError::NotASize(t) => write!(f, "not a size: {t:?}"),
            SizeError::BadSuffix(t) => write!(f, "bad size suffix in {t:?} (use k, m, g or t)"),
            SizeError::OutOfRange(t) => write!(f, "size out of range: {t:?}"),
        }
    }
}

impl std::error::Error for SizeError {}

/// [`parse_size`], saying why a text is refused (for tools that print the reason).
pub fn parse_size_or_error(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits_end == 0 {
        return Err(SizeError::NotASize(text.to_string()));
    }
    let number: u64 = t[..digits_end]
        .parse()
        .map_err(|_| SizeError::OutOfRange(text.to_string()))?;
    let suffix = t[digits_end..].to_ascii_lowercase();
    let shift = match suffix.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SizeError::BadSuffix(text.to_string())),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::OutOfRange(text.to_string()))
}

/// Parses a percentage 0..=100 (decimal, optional trailing `%`).
pub fn parse_percent(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u32 = t.parse().ok()?;
    (v <= 100).then_some(v)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

impl Config {
    /// Reads the contract through `get` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Config {
        let mut issues = Vec::new();
        let mut bad = |variable: &str, value: &str, consequence: &'static str| {
            issues.push(ConfigIssue {
                variable: variable.to_string(),
                value: value.to_string(),
                consequence,
            })
        };

        // Memory: the per-device variable wins over the global one. A valid 0 means
        // "no cap" (HAMi's contract); an invalid value means "nothing may be allocated".
        let mut memory_cap = |name: &str| -> Option<Option<u64>> {
            let v = get(name)?;
            Some(match parse_size(&v) {
                Some(0) => None,
                Some(bytes) => Some(bytes),
                None => {
                    bad(
                        name,
                        &v,
                        "capping at 0 bytes: every allocation is refused (fail closed)",
                    );
                    Some(0)
                }
            })
        };
        let global_mem = memory_cap("CUDA_DEVICE_MEMORY_LIMIT");
        let mut memory_limit = [None; MAX_DEVICES];
        for (i, slot) in memory_limit.iter_mut().enumerate() {
            *slot = memory_cap(&format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"))
                .or(global_mem)
                .flatten();
        }

        let global_sm = get("CUDA_DEVICE_SM_LIMIT").map(|v| {
            let parsed = parse_percent(&v);
            if parsed.is_none() {
                bad(
                    "CUDA_DEVICE_SM_LIMIT",
                    &v,
                    "capping every device at 1% (fail closed)",
                );
            }
            parsed.unwrap_or(1)
        });
        let mut sm_limit = [None; MAX_DEVICES];
        for (i, slot) in sm_limit.iter_mut().enumerate() {
            let name = format!("CUDA_DEVICE_SM_LIMIT_{i}");
            let value = match get(&name) {
                Some(v) => {
                    let parsed = parse_percent(&v);
                    if parsed.is_none() {
                        bad(&name, &v, "capping this device at 1% (fail closed)");
                    }
                    Some(parsed.unwrap_or(1))
                }
                None => global_sm,
            };
            *slot = match value {
                Some(0) | Some(100) | None => None,
                Some(p) => Some(p),
            };
        }

        let core_policy = match get("GPU_CORE_UTILIZATION_POLICY") {
            None => CorePolicy::Default,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "default" => CorePolicy::Default,
                "force" => CorePolicy::Force,
                "disable" => CorePolicy::Disable,
                _ => {
                    bad(
                        "GPU_CORE_UTILIZATION_POLICY",
                        &v,
                        "using \"force\" (fail closed)",
                    );
                    CorePolicy::Force
                }
            },
        };

        let task_priority = match get("CUDA_TASK_PRIORITY") {
            None => 1,
            Some(v) => match v.trim().parse::<i32>() {
                Ok(p) => p,
                Err(_) => {
                    bad("CUDA_TASK_PRIORITY", &v, "using the default priority 1");
                    1
                }
            },
        };

        let oversubscribe = match get("CUDA_OVERSUBSCRIBE") {
            None => false,
            Some(v) => parse_bool(&v).unwrap_or_else(|| {
                bad("CUDA_OVERSUBSCRIBE", &v, "treating it as false");
                false
            }),
        };

        let log_level = match get("LIBCUDA_LOG_LEVEL") {
            None => DEFAULT_LOG_LEVEL,
            Some(v) => match v.trim().parse::<u8>() {
                Ok(l) if l <= 4 => l,
                Ok(_) => 4,
                Err(_) => {
                    bad("LIBCUDA_LOG_LEVEL", &v, "using the default level 2");
                    DEFAULT_LOG_LEVEL
                }
            },
        };

        let control_disabled = match get("CUDA_DISABLE_CONTROL") {
            None => false,
            Some(v) => parse_bool(&v).unwrap_or_else(|| {
                bad(
                    "CUDA_DISABLE_CONTROL",
                    &v,
                    "keeping control on (fail closed)",
                );
                false
            }),
        };

        // HAMi's device plugin's list, else its amd-device-plugin's (ROCr UUIDs).
        let var = ["NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"]
            .into_iter()
            .find(|v| get(v).is_some())
            .unwrap_or("NVIDIA_VISIBLE_DEVICES");
        let (limit_uuids, problem) = parse_limit_uuids(get(var).as_deref());
        if let Some((value, consequence)) = problem {
            bad(var, &value, consequence);
        }
        let limit_uuids_are_rocr = var == "ROCR_VISIBLE_DEVICES" && limit_uuids.is_some();

        Config {
            memory_limit,
            sm_limit,
            shared_cache: get("CUDA_DEVICE_MEMORY_SHARED_CACHE")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_SHARED_CACHE.to_string()),
            core_policy,
            task_priority,
            oversubscribe,
            log_level,
            control_disabled,
            visible_devices: get("CUDA_VISIBLE_DEVICES"),
            limit_uuids,
            limit_uuids_are_rocr,
            issues,
        }
    }

    /// Reads the contract from the process environment.
    pub fn from_env() -> Config {
        Config::from_lookup(|k| {
            std::env::var(k)
                .ok()
                .or_else(|| hip_alias(k).and_then(|h| std::env::var(h).ok()))
        })
    }
}

/// The AMD name of a per-device limit variable (`CUDA_DEVICE_MEMORY_LIMIT_1` ->
/// `HIP_DEVICE_MEMORY_LIMIT_1`, what HAMi's amd-device-plugin sets), read when the CUDA
/// name is unset: the CUDA name wins when both are set.
pub fn hip_alias(name: &str) -> Option<String> {
    ["CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT"]
        .iter()
        .find(|p| name == **p || name.strip_prefix(**p).is_some_and(|r| r.starts_with('_')))
        .map(|_| name.replacen("CUDA_", "HIP_", 1))
}

/// `NVIDIA_VISIBLE_DEVICES` as the key of the per-device limits: its UUIDs when every
/// entry is one (`GPU-...` / `MIG-...`), else `None` (unset, `all`, `none`, `void`,
/// indices: limits follow NVML's device order). A list mixing UUIDs and indices is reported.
pub fn parse_limit_uuids(
    spec: Option<&str>,
) -> (Option<Vec<String>>, Option<(String, &'static str)>) {
    let Some(spec) = spec else {
        return (None, None);
    };
    let entries: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let is_uuid = |e: &str| {
        let upper = e.to_ascii_uppercase();
        upper.starts_with("GPU-") || upper.starts_with("MIG-")
    };
    let uuids = entries.iter().filter(|e| is_uuid(e)).count();
    if uuids == 0 {
        return (None, None);
    }
    if uuids != entries.len() {
        return (
            None,
            Some((
                spec.to_string(),
                "mixes UUIDs and other entries: per-device limits follow NVML's device order",
            )),
        );
    }
    (Some(entries.iter().map(|e| e.to_string()).collect()), None)
}

/// Whether two device UUIDs name the same device: the part after the `GPU-` / `MIG-`
/// prefix, case-insensitively (CUDA reports a MIG instance's UUID bytes, which we print
/// with a `GPU-` prefix).
pub fn same_uuid(a: &str, b: &str) -> bool {
    let body = |u: &str| {
        let u = u.trim();
        match u.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("GPU-") || p.eq_ignore_ascii_case("MIG-") => {
                u[4..].to_string()
            }
            _ => u.to_string(),
        }
    };
    body(a).eq_ignore_ascii_case(&body(b))
}

/// Whether `u` is a GPU UUID spelled as NVML spells it: `GPU-` and 32 lowercase hex
/// digits in 8-4-4-4-12 groups (what HAMi's device plugin, which read it from NVML, puts in
/// `NVIDIA_VISIBLE_DEVICES`). A list of these names the container's devices in their
/// order, spelled the way every view of ours looks them up: no NVML needed to list them.
pub fn is_nvml_gpu_uuid(u: &str) -> bool {
    let Some(body) = u.strip_prefix("GPU-") else {
        return false;
    };
    let groups: Vec<&str> = body.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The container index (the `<i>` of `CUDA_DEVICE_MEMORY_LIMIT_<i>`) of the device with
/// UUID `device`, given `NVIDIA_VISIBLE_DEVICES`'s UUIDs; `None` when it is not listed.
pub fn limit_index_of(limit_uuids: &[String], device: &str) -> Option<ContainerIndex> {
    limit_uuids
        .iter()
        .position(|u| same_uuid(u, device))
        .and_then(ContainerIndex::new)
}

impl Config {
    /// The UUID list the limits follow in a process of this vendor (`hip`: a HIP process):
    /// `NVIDIA_VISIBLE_DEVICES`' for either, `ROCR_VISIBLE_DEVICES`' for HIP processes only
    /// (a CUDA process keeps the device order there: ROCr UUIDs name no CUDA device, and a
    /// list naming none of its devices would leave them all uncapped).
    pub fn limit_uuids_for(&self, hip: bool) -> Option<&[String]> {
        self.limit_uuids
            .as_deref()
            .filter(|_| hip || !self.limit_uuids_are_rocr)
    }

    /// Container device `i`'s memory cap in bytes; `None` = uncapped.
    pub fn memory_limit_of(&self, i: ContainerIndex) -> Option<u64> {
        self.memory_limit[i.get()]
    }

    /// Container device `i`'s core cap in percent (1..=99); `None` = uncapped.
    pub fn sm_limit_of(&self, i: ContainerIndex) -> Option<u32> {
        self.sm_limit[i.get()]
    }

    /// Whether any device of the container has a memory or core limit.
    pub fn any_limit(&self) -> bool {
        self.memory_limit.iter().any(Option::is_some) || self.sm_limit.iter().any(Option::is_some)
    }

    /// The one line to print when this process uses container device `index` (`None`: a
    /// device `NVIDIA_VISIBLE_DEVICES` does not list) that has no limit while other devices
    /// of the container have one; `None` when there is nothing to say.
    pub fn unlimited_device_note(
        &self,
        index: Option<ContainerIndex>,
        uuid: &str,
    ) -> Option<String> {
        if !self.any_limit() || self.control_disabled {
            return None;
        }
        match index {
            Some(i) if self.memory_limit_of(i).is_some() || self.sm_limit_of(i).is_some() => None,
            Some(i) => Some(format!(
                "device {uuid} (CUDA_DEVICE_MEMORY_LIMIT_{i} / CUDA_DEVICE_SM_LIMIT_{i}) has no limit while other devices of this container have one: it is used uncapped"
            )),
            None => Some(format!(
                "device {uuid} is not in NVIDIA_VISIBLE_DEVICES, so no CUDA_DEVICE_*_LIMIT_<i> applies to it while other devices of this container have one: it is used uncapped"
            )),
        }
    }
}

/// One entry of `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisibleEntry {
    Index(usize),
    /// A `GPU-...` or `MIG-...` UUID or a unique prefix of one.
    Uuid(String),
}

/// Parses `CUDA_VISIBLE_DEVICES` the way the driver does: comma separated, stops at the
/// first invalid entry (the driver hides every device from there on).
pub fn parse_visible_devices(spec: &str) -> Vec<VisibleEntry> {
    let mut out = Vec::new();
    for raw in spec.split(',') {
        let e = raw.trim();
        if e.is_empty() {
            break;
        }
        if e.bytes().all(|b| b.is_ascii_digit()) {
            match e.parse::<usize>() {
                Ok(i) => out.push(VisibleEntry::Index(i)),
                Err(_) => break,
            }
        } else if e.starts_with("GPU-") || e.starts_with("MIG-") {
            out.push(VisibleEntry::Uuid(e.to_string()));
        } else {
            break;
        }
    }
    out
}

/// The container index of the device the application calls `ordinal`, when
/// `CUDA_VISIBLE_DEVICES` is `spec` and the container's devices have `container_uuids` in
/// index order ([`map_visible_devices`]); `None`: `spec` does not show that many devices.
pub fn visible_container_index(
    spec: &str,
    container_uuids: &[String],
    ordinal: Ordinal,
) -> Option<ContainerIndex> {
    let map = map_visible_devices(Some(spec), container_uuids);
    map.get(ordinal.position()?)
        .copied()
        .and_then(ContainerIndex::new)
}

/// Maps CUDA ordinals (what the application sees after `CUDA_VISIBLE_DEVICES`) to
/// container device indices (what `CUDA_DEVICE_MEMORY_LIMIT_<i>` is indexed by), given
/// the container's devices' UUIDs in index order. Entries that name no known device are
/// dropped, as the driver drops them; with no spec the mapping is the identity.
pub fn map_visible_devices(spec: Option<&str>, container_uuids: &[String]) -> Vec<usize> {
    let Some(spec) = spec else {
        return (0..container_uuids.len()).collect();
    };
    let mut out = Vec::new();
    for entry in parse_visible_devices(spec) {
        let idx = match entry {
            VisibleEntry::Index(i) if i < container_uuids.len() => Some(i),
            VisibleEntry::Index(_) => None,
            VisibleEntry::Uuid(u) => {
                let matches: Vec<usize> = container_uuids
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| id.eq_ignore_ascii_case(&u) || id.starts_with(&u))
                    .map(|(i, _)| i)
                    .collect();
                (matches.len() == 1).then(|| matches[0])
            }
        };
        match idx {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// One warning line when some memory limit is under 1 MiB (not 0): almost always a
/// missing suffix (`CUDA_DEVICE_MEMORY_LIMIT=3000` is 3000 bytes, not 3000 MiB). Such a
/// slice is enforced as given: no context fits in it, so CUDA cannot be used at all.
pub fn tiny_memory_limit_warning(config: &Config) -> Option<String> {
    let tiny: Vec<String> = config
        .memory_limit
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            l.filter(|&b| b > 0 && b < 1 << 20)
                .map(|b| format!("{i}: {b}"))
        })
        .collect();
    (!tiny.is_empty()).then(|| {
        format!(
            "memory limit under 1 MiB (device {}): values are bytes unless suffixed \
             k/m/g; a missing 'm'? Enforced as given: no CUDA context fits in it",
            tiny.join(", device ")
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn nvml_gpu_uuids_are_recognised_as_spelled() {
        assert!(is_nvml_gpu_uuid("GPU-81810bb3-1564-9594-6b23-fd6c9b2e953f"));
        for not in [
            "GPU-81810BB3-1564-9594-6b23-fd6c9b2e953f",
            "81810bb3-1564-9594-6b23-fd6c9b2e953f",
            "MIG-81810bb3-1564-9594-6b23-fd6c9b2e953f",
            "GPU-81810bb3-1564-9594-6b23-fd6c9b2e953",
            "GPU-81810bb3-1564-9594-6b23fd6c9b2e953f",
            "GPU-81810bb3-1564-9594-6b23-fd6c9b2e953f-0",
            "GPU-0123456789abcdef",
            "0",
            "all",
            "",
        ] {
            assert!(!is_nvml_gpu_uuid(not), "{not}");
        }
    }

    #[test]
    fn hip_names_alias_the_limit_variables_only() {
        use super::hip_alias;
        assert_eq!(
            hip_alias("CUDA_DEVICE_MEMORY_LIMIT").as_deref(),
            Some("HIP_DEVICE_MEMORY_LIMIT")
        );
        assert_eq!(
            hip_alias("CUDA_DEVICE_MEMORY_LIMIT_3").as_deref(),
            Some("HIP_DEVICE_MEMORY_LIMIT_3")
        );
        assert_eq!(
            hip_alias("CUDA_DEVICE_SM_LIMIT_0").as_deref(),
            Some("HIP_DEVICE_SM_LIMIT_0")
        );
        assert_eq!(hip_alias("CUDA_DEVICE_MEMORY_SHARED_CACHE"), None);
        assert_eq!(hip_alias("CUDA_VISIBLE_DEVICES"), None);
    }

    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("3000m"), Some(3000 << 20));
        assert_eq!(parse_size("3000M"), Some(3000 << 20));
        assert_eq!(parse_size("3g"), Some(3 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("010"), Some(10), "never octal");
        assert_eq!(parse_size("0x10"), None);
        assert_eq!(parse_size("-5m"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("m"), None);
        assert_eq!(parse_size("12q"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("17179869184g"), None, "overflow");
        assert_eq!(
            parse_size(" 4k "),
            Some(4096),
            "surrounding blanks are trimmed"
        );
        assert_eq!(
            parse_size("1 GiB"),
            None,
            "no blank between number and suffix"
        );
        assert_eq!(parse_size("1.5g"), None);
    }

    #[test]
    fn size_errors_say_why() {
        assert_eq!(
            parse_size_or_error("-1"),
            Err(SizeError::NotASize("-1".into()))
        );
        assert_eq!(
            parse_size_or_error("12x"),
            Err(SizeError::BadSuffix("12x".into()))
        );
        assert_eq!(
            parse_size_or_error("99999999999999999999"),
            Err(SizeError::OutOfRange("99999999999999999999".into()))
        );
        assert_eq!(
            parse_size_or_error("99999999999t"),
            Err(SizeError::OutOfRange("99999999999t".into()))
        );
        assert_eq!(
            SizeError::BadSuffix("12x".into()).to_string(),
            "bad size suffix in \"12x\" (use k, m, g or t)"
        );
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("30"), Some(30));
        assert_eq!(parse_percent("30%"), Some(30));
        assert_eq!(parse_percent("101"), None);
        assert_eq!(parse_percent("-1"), None);
        assert_eq!(parse_percent("3.5"), None);
    }

    #[test]
    fn per_device_wins_and_zero_means_uncapped() {
        let c = cfg(&[
            ("CUDA_DEVICE_MEMORY_LIMIT", "1g"),
            ("CUDA_DEVICE_MEMORY_LIMIT_1", "3000m"),
            ("CUDA_DEVICE_MEMORY_LIMIT_2", "0"),
        ]);
        assert_eq!(c.memory_limit[0], Some(1 << 30));
        assert_eq!(c.memory_limit[1], Some(3000 << 20));
        assert_eq!(c.memory_limit[2], None);
        assert!(c.issues.is_empty());
        assert_eq!(cfg(&[]).memory_limit, [None; MAX_DEVICES]);
    }

    #[test]
    fn a_limit_under_one_mib_gets_one_warning_line() {
        let c = cfg(&[
            ("CUDA_DEVICE_MEMORY_LIMIT_0", "3000"),
            ("CUDA_DEVICE_MEMORY_LIMIT_1", "4m"),
            ("CUDA_DEVICE_MEMORY_LIMIT_2", "1023k"),
        ]);
        let w = tiny_memory_limit_warning(&c).unwrap();
        assert!(w.contains("device 0: 3000, device 2: 1047552"), "{w}");
        assert!(!w.contains('\n'));
        assert_eq!(
            tiny_memory_limit_warning(&cfg(&[("CUDA_DEVICE_MEMORY_LIMIT", "1m")])),
            None
        );
        assert_eq!(
            tiny_memory_limit_warning(&cfg(&[("CUDA_DEVICE_MEMORY_LIMIT", "0")])),
            None
        );
        // Fail-closed 0 (malformed) has its own line.
        assert_eq!(
            tiny_memory_limit_warning(&cfg(&[("CUDA_DEVICE_MEMORY_LIMIT", "x")])),
            None
        );
    }

    #[test]
    fn invalid_values_fail_closed_with_one_issue_each() {
        let c = cfg(&[
            ("CUDA_DEVICE_MEMORY_LIMIT_0", "lots"),
            ("CUDA_DEVICE_SM_LIMIT", "abc"),
            ("GPU_CORE_UTILIZATION_POLICY", "sometimes"),
        ]);
        assert_eq!(c.memory_limit[0], Some(0));
        assert_eq!(c.memory_limit[1], None);
        assert_eq!(c.sm_limit[0], Some(1));
        assert_eq!(c.core_policy, CorePolicy::Force);
        assert_eq!(c.issues.len(), 3);
        let line = c.issues[0].to_string();
        assert!(
            line.starts_with("invalid "),
            "one prefix, the log's: {line}"
        );
        assert!(line.contains("CUDA_DEVICE_MEMORY_LIMIT_0") && line.contains("lots"));
        let g = cfg(&[("CUDA_DEVICE_MEMORY_LIMIT", "x")]);
        assert_eq!(g.memory_limit[5], Some(0));
        assert_eq!(g.issues.len(), 1);
    }

    #[test]
    fn sm_limits() {
        let c = cfg(&[
            ("CUDA_DEVICE_SM_LIMIT", "30"),
            ("CUDA_DEVICE_SM_LIMIT_1", "100"),
        ]);
        assert_eq!(c.sm_limit[0], Some(30));
        assert_eq!(c.sm_limit[1], None);
    }

    #[test]
    fn other_knobs() {
        let c = cfg(&[
            ("GPU_CORE_UTILIZATION_POLICY", "FORCE"),
            ("CUDA_TASK_PRIORITY", "0"),
            ("CUDA_OVERSUBSCRIBE", "true"),
            ("LIBCUDA_LOG_LEVEL", "4"),
            ("CUDA_DISABLE_CONTROL", "false"),
            ("CUDA_DEVICE_MEMORY_SHARED_CACHE", "/x/y.cache"),
        ]);
        assert_eq!(c.core_policy, CorePolicy::Force);
        assert_eq!(c.task_priority, 0);
        assert!(c.oversubscribe);
        assert_eq!(c.log_level, 4);
        assert!(!c.control_disabled);
        assert_eq!(c.shared_cache, "/x/y.cache");
        assert_eq!(cfg(&[]).shared_cache, DEFAULT_SHARED_CACHE);
    }

    #[test]
    fn rocr_visible_devices_lists_the_uuids_when_nvidia_visible_devices_is_unset() {
        let c = cfg(&[(
            "ROCR_VISIBLE_DEVICES",
            "GPU-772816553dc2df3a,GPU-0123456789abcdef",
        )]);
        assert_eq!(
            c.limit_uuids.as_deref(),
            Some(
                &[
                    "GPU-772816553dc2df3a".to_string(),
                    "GPU-0123456789abcdef".to_string()
                ][..]
            )
        );
        let both = cfg(&[
            ("NVIDIA_VISIBLE_DEVICES", "GPU-bbbb-2"),
            ("ROCR_VISIBLE_DEVICES", "GPU-772816553dc2df3a"),
        ]);
        assert_eq!(both.limit_uuids, Some(vec!["GPU-bbbb-2".to_string()]));
        // Indices: limits by ordinal, as ROCr already renumbered the devices.
        assert_eq!(cfg(&[("ROCR_VISIBLE_DEVICES", "1,0")]).limit_uuids, None);
        // ROCr's list is a HIP process's only; NVIDIA's applies to both.
        let rocr = cfg(&[("ROCR_VISIBLE_DEVICES", "GPU-772816553dc2df3a")]);
        assert!(rocr.limit_uuids_for(true).is_some());
        assert_eq!(rocr.limit_uuids_for(false), None);
        assert!(both.limit_uuids_for(false).is_some() && both.limit_uuids_for(true).is_some());
    }

    #[test]
    fn limits_follow_the_uuids_of_nvidia_visible_devices() {
        let ix = |i| ContainerIndex::new(i);
        let c = cfg(&[
            ("NVIDIA_VISIBLE_DEVICES", "GPU-bbbb-2, GPU-aaaa-1"),
            ("CUDA_DEVICE_MEMORY_LIMIT_0", "1g"),
        ]);
        let uuids = c.limit_uuids.clone().unwrap();
        assert_eq!(uuids, vec!["GPU-bbbb-2", "GPU-aaaa-1"]);
        // The driver's device "GPU-aaaa-1" is the second listed: limit _1.
        assert_eq!(limit_index_of(&uuids, "GPU-aaaa-1"), ix(1));
        assert_eq!(
            limit_index_of(&uuids, "gpu-BBBB-2"),
            ix(0),
            "case-insensitive"
        );
        assert_eq!(limit_index_of(&uuids, "GPU-cccc-3"), None, "not listed");
        assert!(c.unlimited_device_note(ix(0), "GPU-bbbb-2").is_none());
        let note = c.unlimited_device_note(ix(1), "GPU-aaaa-1").unwrap();
        assert!(note.contains("GPU-aaaa-1") && note.contains("_1"), "{note}");
        assert!(!note.contains('\n'));
        assert!(c
            .unlimited_device_note(None, "GPU-cccc-3")
            .unwrap()
            .contains("not in NVIDIA_VISIBLE_DEVICES"));
        // No limit anywhere: nothing to say.
        let none = cfg(&[("NVIDIA_VISIBLE_DEVICES", "GPU-bbbb-2")]);
        assert!(none.unlimited_device_note(ix(1), "GPU-x").is_none());
        // A global limit covers every listed device.
        let global = cfg(&[
            ("NVIDIA_VISIBLE_DEVICES", "GPU-bbbb-2,GPU-aaaa-1"),
            ("CUDA_DEVICE_MEMORY_LIMIT", "2g"),
        ]);
        assert!(global.unlimited_device_note(ix(1), "GPU-aaaa-1").is_none());
    }

    #[test]
    fn nvidia_visible_devices_without_uuids_keeps_index_order() {
        for v in ["all", "none", "void", "0,1", ""] {
            let c = cfg(&[("NVIDIA_VISIBLE_DEVICES", v)]);
            assert_eq!(c.limit_uuids, None, "{v}");
            assert!(c.issues.is_empty(), "{v}");
        }
        assert_eq!(cfg(&[]).limit_uuids, None);
        let mixed = cfg(&[("NVIDIA_VISIBLE_DEVICES", "GPU-aaaa-1,1")]);
        assert_eq!(mixed.limit_uuids, None);
        assert_eq!(mixed.issues.len(), 1);
        assert!(mixed.issues[0]
            .to_string()
            .contains("NVIDIA_VISIBLE_DEVICES"));
        assert_eq!(
            cfg(&[("NVIDIA_VISIBLE_DEVICES", "MIG-1234")]).limit_uuids,
            Some(vec!["MIG-1234".to_string()])
        );
        assert!(
            same_uuid("MIG-AbC", "GPU-abc"),
            "CUDA prints a MIG UUID as GPU-"
        );
    }

    #[test]
    fn visible_devices_mapping() {
        let uuids: Vec<String> = ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-cccc-3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(map_visible_devices(None, &uuids), vec![0, 1, 2]);
        assert_eq!(map_visible_devices(Some("2,0"), &uuids), vec![2, 0]);
        assert_eq!(map_visible_devices(Some("GPU-bbbb"), &uuids), vec![1]);
        assert_eq!(
            map_visible_devices(Some("1,GPU-cccc-3"), &uuids),
            vec![1, 2]
        );
        // The driver stops at the first invalid entry.
        assert_eq!(map_visible_devices(Some("0,7,1"), &uuids), vec![0]);
        assert_eq!(
            map_visible_devices(Some("GPU-zzzz,1"), &uuids),
            Vec::<usize>::new()
        );
        assert_eq!(map_visible_devices(Some(""), &uuids), Vec::<usize>::new());
        // One ordinal at a time, as a container index.
        let ix = |i| ContainerIndex::new(i);
        assert_eq!(visible_container_index("2,0", &uuids, Ordinal(0)), ix(2));
        assert_eq!(visible_container_index("2,0", &uuids, Ordinal(1)), ix(0));
        assert_eq!(visible_container_index("2,0", &uuids, Ordinal(2)), None);
        assert_eq!(visible_container_index("2,0", &uuids, Ordinal(-1)), None);
        assert_eq!(
            visible_container_index("GPU-bbbb", &uuids, Ordinal(0)),
            ix(1)
        );
        // An ambiguous prefix matches nothing.
        assert_eq!(
            map_visible_devices(Some("GPU-"), &uuids),
            Vec::<usize>::new()
        );
    }
}

/// Randomised inputs for the parsers: no input may panic, and every accepted value must
/// satisfy the documented rules (a fuzz test without a fuzzing crate: a fixed-seed xorshift
/// over an alphabet biased towards the characters the parsers care about).
#[cfg(test)]
mod fuzz {
    use super::*;

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn text(&mut self) -> String {
            const ALPHABET: &[&str] = &[
                "0",
                "1",
                "7",
                "9",
                "k",
                "K",
                "m",
                "M",
                "g",
                "G",
                "t",
                "b",
                "iB",
                "%",
                "-",
                "+",
                " ",
                ",",
                "x",
                "GPU-",
                "MIG-",
                "\u{e9}",
                "\0",
                "99999999999999999999",
                ".",
            ];
            let len = (self.next() % 12) as usize;
            (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn parsers_never_panic_and_accept_only_well_formed_values() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for _ in 0..200_000 {
            let t = rng.text();
            if let Some(bytes) = parse_size(&t) {
                let digits: String = t.trim().chars().take_while(char::is_ascii_digit).collect();
                assert!(!digits.is_empty(), "{t:?} accepted without digits");
                assert!(bytes >= digits.parse::<u64>().unwrap(), "{t:?} -> {bytes}");
            }
            if let Some(p) = parse_percent(&t) {
                assert!(p <= 100, "{t:?} -> {p}");
            }
            let entries = parse_visible_devices(&t);
            assert!(entries.len() <= t.split(',').count());
            let uuids = vec!["GPU-a".to_string(), "GPU-b".to_string()];
            for i in map_visible_devices(Some(&t), &uuids) {
                assert!(i < uuids.len());
            }
            let c = Config::from_lookup(|k| {
                (k == "CUDA_DEVICE_MEMORY_LIMIT" || k == "CUDA_DEVICE_SM_LIMIT_3")
                    .then(|| t.clone())
            });
            assert!(c.issues.len() <= 2);
        }
    }
}
