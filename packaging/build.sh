#!/usr/bin/env bash
# Builds the statically linked release binary of callmgr and proves it is static.
#
#   packaging/build.sh            # -> $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/callmgr
#
# Static means glibc's own static libc (`-C target-feature=+crt-static`) on the gnu target: there
# is no musl target on the build machine. `--target` is required: it keeps RUSTFLAGS off build
# scripts and proc macros, which must stay dynamic. The profile is [profile.release] in
# Cargo.toml (fat LTO, one codegen unit, panic = abort, debug info stripped): about 7 min from
# scratch on 2 cores, 3 min after a change to src/.
#
# Name resolution in this binary: glibc's `files` and `dns` NSS sources are built into the
# static libc (glibc >= 2.34), so /etc/hosts, DNS and IP literals work. Any other `hosts:` source
# in /etc/nsswitch.conf (myhostname, resolve, mdns*, ...) is dlopen()ed from the host's shared
# glibc, which a static program cannot do safely. See docs/operations.md, "Static build and
# name resolution".
set -euo pipefail

cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
binary="$target_dir/$target/release/callmgr"

started=$SECONDS
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$target" --bin callmgr
elapsed=$((SECONDS - started))

fail() {
    echo "build.sh: $*" >&2
    exit 1
}

# `file` says "statically linked" (or "static-pie linked"); `ldd` says "not a dynamic executable"
# (or "statically linked" for a static PIE). Anything else means a shared library crept in.
file_says=$(file -b "$binary")
case "$file_says" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) fail "$binary is not static: file says: $file_says" ;;
esac
ldd_says=$(ldd "$binary" 2>&1 || true)
case "$ldd_says" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) fail "$binary is not static: ldd says: $ldd_says" ;;
esac
"$binary" --version >/dev/null || fail "$binary does not run"

size_bytes=$(stat -c %s "$binary")
echo "build.sh: $binary"
echo "build.sh:   file: $file_says"
echo "build.sh:   ldd:  $(echo "$ldd_says" | tr -s ' \t' ' ' | sed 's/^ //')"
echo "build.sh:   size: $size_bytes bytes ($((size_bytes / 1024 / 1024)) MiB), built in ${elapsed}s"
