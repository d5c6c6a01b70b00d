//! What the simulator needs to know about module images: which kernels a PTX text declares.
//! Binary images (cubin ELF, fatbinaries) are not inspected: any kernel name is accepted.

/// Magic numbers of binary images: ELF (cubin), fatbin header, fatbinary wrapper.
pub fn is_binary_image(prefix: &[u8]) -> bool {
    prefix.starts_with(b"\x7fELF")
        || prefix.starts_with(&0xBA55_ED50u32.to_le_bytes())
        || prefix.starts_with(&0x4662_43B1u32.to_le_bytes())
}

/// Whether the bytes look like the start of PTX text (first non-blank is a directive or a
/// comment), so reading them as a NUL-terminated string is what the driver would do too.
pub fn looks_like_ptx(prefix: &[u8]) -> bool {
    prefix
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'.' || b == b'/')
}

/// Kernel names declared with `.entry` in PTX text; `None` when the text declares none
/// (then the simulator accepts any name).
pub fn ptx_entries(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(".entry") {
        let after = &rest[i + ".entry".len()..];
        let boundary_ok = after.starts_with(|c: char| c.is_ascii_whitespace());
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.'))
            .collect();
        if boundary_ok && !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
        rest = after;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_ptx() {
        let ptx = ".version 8.0\n.target sm_90\n.visible .entry k1(\n .param .u64 p\n)\n{ ret; }\n\
                   .entry  _Z2k2Pf (){}\n.visible .entry k1(){}\n";
        assert_eq!(
            ptx_entries(ptx),
            Some(vec!["k1".to_string(), "_Z2k2Pf".to_string()])
        );
        assert_eq!(ptx_entries(".version 8.0\n.func f(){}"), None);
        assert_eq!(ptx_entries(".entryx y"), None);
        assert!(looks_like_ptx(b"  // comment\n.version"));
        assert!(looks_like_ptx(b".version 8.0"));
        assert!(!looks_like_ptx(b"x"));
        assert!(!looks_like_ptx(b"\x7fELF"));
        assert!(is_binary_image(b"\x7fELF\x02"));
        assert!(is_binary_image(&[0x50, 0xED, 0x55, 0xBA, 1]));
        assert!(is_binary_image(&[0xB1, 0x43, 0x62, 0x46]));
        assert!(!is_binary_image(b".ver"));
    }
}
