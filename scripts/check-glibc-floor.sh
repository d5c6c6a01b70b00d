#!/usr/bin/env bash
# check-glibc-floor.sh LIB [MAX_VERSION]
#
# Checks that a shared library will load into an image with an old glibc:
#   1. every GLIBC_x.y symbol version it imports (objdump -T, cross-checked with the
#      version references of objdump -p) is <= MAX_VERSION (default 2.17);
#      GLIBC_PRIVATE is never acceptable;
#   2. its NEEDED entries (readelf -d) hold no libgcc_s (and nothing outside glibc itself:
#      libc, libdl, libpthread, librt, libm, ld-linux).
# Why: ld.so refuses a preload that needs a newer glibc ("cannot be preloaded ... ignored")
# and the container then runs with no cap at all; and libgcc_s costs every process start.
#
# Exit status: 0 = all checks pass, 1 = a check failed, 2 = usage / missing tool.
set -euo pipefail

usage() {
    echo "usage: $0 LIB [MAX_GLIBC_VERSION=2.17]" >&2
    exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage
LIB="$1"
MAX="${2:-2.17}"
[[ "$MAX" =~ ^[0-9]+(\.[0-9]+)+$ ]] || { echo "check-glibc-floor: bad version '$MAX'" >&2; usage; }
[[ -f "$LIB" ]] || { echo "check-glibc-floor: $LIB: no such file" >&2; exit 2; }
for tool in objdump readelf; do
    command -v "$tool" >/dev/null || { echo "check-glibc-floor: $tool not found (apt-get install binutils)" >&2; exit 2; }
done

# Version a <= version b (numeric, component-wise).
version_le() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$1" ]]; }

fail=0
echo "check-glibc-floor: $LIB (max GLIBC_$MAX)"

# --- 1. glibc symbol versions -------------------------------------------------------------
dynsyms="$(objdump -T "$LIB")" || { echo "check-glibc-floor: objdump -T failed" >&2; exit 2; }
# Imported symbols: "*UND*" lines; the version is in parentheses for a hidden-version entry
# or plain in the version column, e.g. "(GLIBC_2.34) dlvsym" / "GLIBC_2.2.5 memset".
und="$(grep -E '\*UND\*' <<<"$dynsyms" || true)"
# Every version the library requires, from the symbols and from the version references
# (objdump -p "required from libc.so.6: ... GLIBC_2.34"): a union, so neither can hide one.
versions="$( { grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' <<<"$und" || true
               objdump -p "$LIB" | sed -n '/^Version References:/,/^$/p' \
                   | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' || true; } | sort -u -V)"
max_seen=""
while read -r v; do
    [[ -n "$v" ]] || continue
    n="${v#GLIBC_}"
    max_seen="$n"
    if ! version_le "$n" "$MAX"; then
        fail=1
        syms="$(grep -E "\(?${v//./\\.}\)? " <<<"$und" | awk '{print $NF}' | sort -u | tr '\n' ' ')"
        echo "  FAIL  $v > GLIBC_$MAX: ${syms:-(version reference only)}"
    fi
done <<<"$versions"
echo "  glibc versions required: $(tr '\n' ' ' <<<"$versions")"
if grep -q 'GLIBC_PRIVATE' <<<"$und"; then
    fail=1
    echo "  FAIL  GLIBC_PRIVATE symbols imported: $(grep 'GLIBC_PRIVATE' <<<"$und" | awk '{print $NF}' | tr '\n' ' ')"
fi
other="$(grep -oE '\(?(GCC|GLIBCXX|CXXABI)_[0-9.]+\)?' <<<"$und" | tr -d '()' | sort -u -V | tr '\n' ' ' || true)"
if [[ -n "$other" ]]; then
    fail=1
    echo "  FAIL  non-glibc symbol versions imported (libgcc_s/libstdc++): $other"
fi

# --- 2. NEEDED entries --------------------------------------------------------------------
needed="$(readelf -d "$LIB" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
echo "  NEEDED: $(tr '\n' ' ' <<<"$needed")"
while read -r n; do
    [[ -n "$n" ]] || continue
    case "$n" in
        libgcc_s.so*)
            fail=1
            echo "  FAIL  NEEDED $n: libgcc_s must be linked statically or avoided (build with scripts/build-release.sh)" ;;
        libc.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | libm.so.6 | ld-linux-x86-64.so.2 | ld-linux-aarch64.so.1) ;;
        *)
            fail=1
            echo "  FAIL  NEEDED $n: not part of glibc (a preload library must depend on glibc only)" ;;
    esac
done <<<"$needed"

if [[ $fail -eq 0 ]]; then
    echo "check-glibc-floor: OK: highest required GLIBC_${max_seen:-none} <= GLIBC_$MAX, no libgcc_s"
else
    echo "check-glibc-floor: FAILED for $LIB (max GLIBC_$MAX)"
fi
exit $fail
