#!/usr/bin/env bash
# Fetches the real NVIDIA tools the tests run over the simulated GPU and unpacks them into
# target/nvidia-tools (or $VGPU_NVIDIA_TOOLS). Idempotent: with the tools there, it only
# prints what it has.
#
#   nvidia-smi   NVIDIA's own, from Debian 12's non-free component (535.261.03 today)
#   nvtop        from Debian 12's contrib component (3.0.1)
#
# Nothing is installed: the .deb files are downloaded (`apt-get download`) and unpacked with
# `dpkg -x`; the driver packages they depend on are never fetched. When no apt source offers
# non-free and contrib, one is added as a deb822 file in /etc/apt/sources.list.d/ with the
# same URI and suites as the system's main Debian source (needs root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${VGPU_NVIDIA_TOOLS:-$ROOT/target/nvidia-tools}"
PACKAGES=(nvidia-smi nvtop)
SOURCE_FILE=/etc/apt/sources.list.d/vgpu-debian-non-free.sources
export DEBIAN_FRONTEND=noninteractive

have_tools() {
    [[ -x "$DEST/usr/lib/nvidia/current/nvidia-smi" && -x "$DEST/usr/bin/nvtop" && -s "$DEST/VERSIONS" ]]
}

if have_tools; then
    echo "setup-nvidia-tools: $DEST up to date ($(tr '\n' ' ' <"$DEST/VERSIONS"))"
    exit 0
fi

retry() {
    local i
    for i in 1 2 3; do
        if "$@"; then
            return 0
        fi
        echo "setup-nvidia-tools: '$*' failed (try $i), retrying" >&2
        sleep 5
    done
    return 1
}

# Whether apt has a candidate version of every package.
offered() {
    local p
    for p in "${PACKAGES[@]}"; do
        apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]' || return 1
    done
}

# The system's main Debian source as a deb822 stanza with components non-free and contrib.
# Reads deb822 files (Debian 12's default) and one-line sources.list entries.
non_free_stanza() {
    local uri="" suites="" signed=""
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" && "$f" != "$SOURCE_FILE" ]] || continue
        # First stanza with a Debian URI (not the security archive) and component main.
        IFS=$'\t' read -r uri suites signed < <(awk '
            function flush() {
                if (uris ~ /debian/ && uris !~ /security/ && comps ~ /(^| )main( |$)/ && !done) {
                    print uris "\t" suites "\t" signed; done = 1
                }
                uris = ""; suites = ""; comps = ""; signed = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            /^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0 }
            /^Signed-By:/ { sub(/^Signed-By:[ \t]*/, ""); signed = $0 }
            END { flush() }
        ' "$f") || true
        [[ -n "$uri" ]] && break
    done
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        # deb [options] URI SUITE main ...
        read -r uri suites < <(awk '$1 == "deb" && $0 ~ / main/ && $0 !~ /security/ {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            print $i, $(i + 1); exit }' /etc/apt/sources.list) || true
    fi
    [[ -n "$uri" && -n "$suites" ]] || return 1
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: non-free contrib\n' "$uri" "$suites"
    if [[ -n "$signed" ]]; then
        printf 'Signed-By: %s\n' "$signed"
    fi
}

if ! offered; then
    retry timeout 600 apt-get update -q >/dev/null || true
fi
if ! offered; then
    if [[ $EUID -ne 0 ]]; then
        echo "setup-nvidia-tools: apt offers no ${PACKAGES[*]} and adding non-free/contrib needs root" >&2
        exit 1
    fi
    if ! stanza="$(non_free_stanza)"; then
        echo "setup-nvidia-tools: no Debian apt source found to add non-free/contrib to" >&2
        exit 1
    fi
    echo "setup-nvidia-tools: adding $SOURCE_FILE:"
    printf '%s\n' "$stanza" | sed 's/^/    /'
    printf '%s\n' "$stanza" >"$SOURCE_FILE"
    retry timeout 600 apt-get update -q >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Root downloads into its own temporary directory (apt's _apt sandbox user could not write it).
sandbox=()
if [[ $EUID -eq 0 ]]; then
    sandbox=(-o APT::Sandbox::User=root)
fi
(cd "$work" && retry timeout 600 apt-get download -q "${sandbox[@]}" "${PACKAGES[@]}")
stage="$DEST.tmp.$$"
rm -rf "$stage"
mkdir -p "$stage"
: >"$stage/VERSIONS"
for p in "${PACKAGES[@]}"; do
    deb="$(ls "$work"/"${p}"_*.deb)"
    dpkg -x "$deb" "$stage"
    echo "$p=$(dpkg-deb -f "$deb" Version)" >>"$stage/VERSIONS"
done
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$stage" "$DEST"
have_tools || { echo "setup-nvidia-tools: unpacked packages lack the tools" >&2; exit 1; }
echo "setup-nvidia-tools: $DEST ($(tr '\n' ' ' <"$DEST/VERSIONS"))"
