#!/usr/bin/env bash
# Build the fchm binaries for 64-bit ARM (Jetson) with Debian's cross gcc.
# Prints the path of the built `fchm`. Usage: cross/build-aarch64.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
profile=debug
args=()
if [ "${1:-}" = "--release" ]; then profile=release; args+=(--release); fi
cargo build -q --target "$target" --bin fchm "${args[@]}" >&2
bin=target/$target/$profile/fchm
# Highest glibc symbol version the binary needs (JetPack 6 ships 2.35).
if command -v aarch64-linux-gnu-objdump >/dev/null; then
  need=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -n 1)
  echo "$bin needs $need" >&2
fi
echo "$PWD/$bin"
