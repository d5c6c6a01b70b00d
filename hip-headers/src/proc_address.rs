//! What the table implies: the symbol version nodes, the per-symbol rows, the linker version
//! script, and how `hipGetProcAddress` picks a row.

/// The symbol version nodes of `libamdhip64.so`, oldest first; each inherits the previous
/// (AMD's `hip_hcc.map.in`: there is no `hip_5.4`, `hip_6.3` or `hip_7.0` node).
pub const NODES: &[&str] = &[
    "hip_4.2", "hip_4.3", "hip_4.4", "hip_4.5", "hip_5.0", "hip_5.1", "hip_5.2", "hip_5.3",
    "hip_5.5", "hip_5.6", "hip_6.0", "hip_6.1", "hip_6.2", "hip_6.4", "hip_6.5", "hip_7.1",
    "hip_7.2",
];

/// `hip_6.0` -> 600 (`hipGetProcAddress` versions are `100 * major + minor`).
pub const fn node_version(node: &str) -> i32 {
    let b = node.as_bytes();
    // "hip_M.m" or "hip_M.mm"
    let mut i = 4;
    let mut major = 0i32;
    while i < b.len() && b[i] != b'.' {
        major = major * 10 + (b[i] - b'0') as i32;
        i += 1;
    }
    i += 1;
    let mut minor = 0i32;
    while i < b.len() {
        minor = minor * 10 + (b[i] - b'0') as i32;
        i += 1;
    }
    major * 100 + minor
}

macro_rules! proc_rows {
    ($( $name:ident = $node:literal [$kind:ident] ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty; )*) => {
        /// Every row of [`crate::hip_api!`]: `(symbol, node)`, in table order.
        pub const PROCS: &[(&str, &str)] = &[ $( (stringify!($name), $node) ),* ];
    };
}
crate::hip_api!(proc_rows);

/// Number of rows of the table.
pub const PROC_COUNT: usize = PROCS.len();

/// The GNU ld version script that exports every row under its node and hides the rest.
pub fn version_script() -> String {
    let mut out = String::from("/* Generated from hip_headers::hip_api! - do not edit. */\n");
    for (i, node) in NODES.iter().enumerate() {
        out.push_str(node);
        out.push_str(" {\n");
        let syms: Vec<&str> = PROCS
            .iter()
            .filter(|(_, n)| n == node)
            .map(|(s, _)| *s)
            .collect();
        if !syms.is_empty() {
            out.push_str("global:\n");
            for s in syms {
                out.push_str("    ");
                out.push_str(s);
                out.push_str(";\n");
            }
        }
        out.push_str("local:\n    *;\n}");
        if i > 0 {
            out.push(' ');
            out.push_str(NODES[i - 1]);
        }
        out.push_str(";\n\n");
    }
    out
}

/// The answer to a `hipGetProcAddress` question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcLookup {
    /// Row index into [`PROCS`].
    Found(usize),
    /// No such symbol (`HIP_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND`).
    NotFound,
    /// The symbol exists but was introduced after the requested version
    /// (`HIP_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT`).
    VersionNotSufficient,
    /// Flags other than default (0), legacy stream (1) or per-thread stream (2).
    BadFlags,
}

fn index_of(name: &str) -> Option<usize> {
    PROCS.iter().position(|(s, _)| *s == name)
}

/// How `hipGetProcAddress(symbol, .., hip_version, flags, ..)` picks a row:
/// - `hipGetDeviceProperties` asked for with version >= 600 is `hipGetDevicePropertiesR0600`
///   (what ROCm 6 headers map the name to); below 600 it is the `R0000` function;
/// - flag 2 (per-thread default stream) picks the `_spt` twin where one exists; flags 0 and 1
///   the plain function;
/// - a symbol whose node is newer than `hip_version` is "version not sufficient".
pub fn resolve_proc(symbol: &str, hip_version: i32, flags: u64) -> ProcLookup {
    if flags > 2 {
        return ProcLookup::BadFlags;
    }
    let base = match symbol {
        "hipGetDeviceProperties" if hip_version >= 600 => "hipGetDevicePropertiesR0600",
        s => s,
    };
    let mut idx = None;
    if flags == 2 {
        let spt = format!("{base}_spt");
        idx = index_of(&spt);
    }
    let Some(i) = idx.or_else(|| index_of(base)) else {
        return ProcLookup::NotFound;
    };
    if node_version(PROCS[i].1) > hip_version {
        return ProcLookup::VersionNotSufficient;
    }
    ProcLookup::Found(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions_parse() {
        assert_eq!(node_version("hip_4.2"), 402);
        assert_eq!(node_version("hip_6.0"), 600);
        assert_eq!(node_version("hip_7.2"), 702);
        let v: Vec<i32> = NODES.iter().map(|n| node_version(n)).collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]), "nodes ascend: {v:?}");
    }

    #[test]
    fn every_row_sits_in_a_known_node_and_names_are_unique() {
        for (s, n) in PROCS {
            assert!(NODES.contains(n), "{s} in unknown node {n}");
            assert_eq!(PROCS.iter().filter(|(t, _)| t == s).count(), 1, "{s} twice");
        }
    }

    #[test]
    fn properties_follow_the_requested_version() {
        let name = |l| match l {
            ProcLookup::Found(i) => PROCS[i].0,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            name(resolve_proc("hipGetDeviceProperties", 601, 0)),
            "hipGetDevicePropertiesR0600"
        );
        assert_eq!(
            name(resolve_proc("hipGetDeviceProperties", 502, 0)),
            "hipGetDeviceProperties"
        );
        assert_eq!(
            resolve_proc("hipGetDevicePropertiesR0600", 502, 0),
            ProcLookup::VersionNotSufficient
        );
    }

    #[test]
    fn per_thread_flag_picks_spt_twins() {
        let i = match resolve_proc("hipLaunchKernel", 700, 2) {
            ProcLookup::Found(i) => i,
            o => panic!("{o:?}"),
        };
        assert_eq!(PROCS[i].0, "hipLaunchKernel_spt");
        let j = match resolve_proc("hipLaunchKernel", 700, 1) {
            ProcLookup::Found(i) => i,
            o => panic!("{o:?}"),
        };
        assert_eq!(PROCS[j].0, "hipLaunchKernel");
        // No twin: the plain function.
        let k = match resolve_proc("hipMalloc", 700, 2) {
            ProcLookup::Found(i) => i,
            o => panic!("{o:?}"),
        };
        assert_eq!(PROCS[k].0, "hipMalloc");
        assert_eq!(resolve_proc("hipMalloc", 700, 3), ProcLookup::BadFlags);
        assert_eq!(resolve_proc("hipNoSuchThing", 700, 0), ProcLookup::NotFound);
    }

    #[test]
    fn version_script_chains_nodes() {
        let s = version_script();
        assert!(s.contains("hip_4.3 {"));
        assert!(s.contains("} hip_5.6;"), "hip_6.0 inherits hip_5.6");
        assert!(s.contains("    hipGetDevicePropertiesR0600;"));
        assert_eq!(s.matches("local:").count(), NODES.len());
    }
}
