#!/usr/bin/env bash
# Cross-build fchm's binaries for the camera.
#
#   cross/build.sh aarch64|armv7 [--release] [--glibc 2.31] [--bin NAME]...
#
# Without --glibc: rustup target + Debian's cross gcc; the result needs the
# build machine's glibc (Debian 12: up to GLIBC_2.35 symbols, i.e. JetPack 6).
# With --glibc X.Y: cargo-zigbuild + ziglang (both from PyPI) link against
# glibc X.Y, e.g. 2.31 for JetPack 5 (Ubuntu 20.04).
# Prints the built binaries' paths on stdout; everything else goes to stderr.
# Fails if a binary needs a newer glibc than requested.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: cross/build.sh aarch64|armv7 [--release] [--glibc X.Y] [--bin NAME]...}
shift
case $arch in
  aarch64) target=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static" ;;
  armv7) target=armv7-unknown-linux-gnueabihf; gnu=arm-linux-gnueabihf; pkgs="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static" ;;
  *) echo "unknown architecture $arch (aarch64 or armv7)" >&2; exit 2 ;;
esac
profile=debug; args=(); glibc=""; bins=()
while [ $# -gt 0 ]; do
  case $1 in
    --release) profile=release; args+=(--release) ;;
    --glibc) glibc=$2; shift ;;
    --bin) bins+=("$2"); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#bins[@]} -gt 0 ] || bins=(fchm fchmd)
for b in "${bins[@]}"; do args+=(--bin "$b"); done

if ! command -v $gnu-gcc >/dev/null || ! command -v qemu-${arch/armv7/arm}-static >/dev/null || ! command -v clang >/dev/null; then
  apt-get update -qq
  # clang/libclang: v4l's bindgen generates the V4L2 bindings for the target.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs libclang-dev >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
# bindgen parses the target's kernel headers from Debian's cross sysroot.
export BINDGEN_EXTRA_CLANG_ARGS_${target//-/_}="--sysroot=/usr/$gnu"

if [ -n "$glibc" ]; then
  command -v cargo-zigbuild >/dev/null || python3 -m pip install -q --disable-pip-version-check cargo-zigbuild ziglang >&2
  cargo zigbuild -q --target "$target.$glibc" "${args[@]}" >&2
else
  cargo build -q --target "$target" "${args[@]}" >&2
fi

for b in "${bins[@]}"; do
  bin=target/$target/$profile/$b
  need=$($gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -n 1)
  echo "$bin needs $need" >&2
  if [ -n "$glibc" ] && [ "$(printf '%s\n%s\n' "${need#GLIBC_}" "$glibc" | sort -V | tail -n 1)" != "$glibc" ]; then
    echo "$bin needs $need, newer than the requested glibc $glibc" >&2
    exit 1
  fi
  echo "$PWD/$bin"
done
