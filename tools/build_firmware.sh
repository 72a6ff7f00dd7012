#!/usr/bin/env bash
# Builds a 32-bit MicroPython unix port (`make firmware-unix`; docs/firmware.md):
#   build_firmware.sh --check SRC                    is SRC a MicroPython source tree?
#   build_firmware.sh --stamp SRC STAMP              STAMP names SRC; touched when SRC changed
#   build_firmware.sh SRC OUT [FROZEN_MANIFEST]      build it into the file OUT
# SRC is a MicroPython source tree (a checkout of MicroPython's repository at the pinned release).
# Everything is built out of that tree, beside OUT: mpy-cross into <dir of OUT>/mpy-cross/, the
# port's objects into <dir of OUT>/obj-<name of OUT>/; SRC itself is only read. gcc -m32 (Debian's
# gcc-multilib, installed when missing), the standard variant without btree and ffi (their
# libraries are not needed), FROZEN_MANIFEST (absolute or relative to here) frozen in when given.
set -euo pipefail

die() { echo "firmware-unix: error: $*" >&2; exit 1; }

check_tree() {
  local src=$1
  [ -n "$src" ] || die "MICROPYTHON_SRC is not set: make firmware-unix MICROPYTHON_SRC=/path/to/micropython (a checkout of MicroPython's repository; see docs/firmware.md)"
  [ -d "$src" ] || die "MICROPYTHON_SRC=$src: no such folder"
  for f in py/mpconfig.h py/mkrules.mk mpy-cross/Makefile ports/unix/Makefile \
           ports/unix/variants/standard/manifest.py tools/makemanifest.py; do
    [ -f "$src/$f" ] || die "MICROPYTHON_SRC=$src is not a MicroPython source tree ($f missing)"
  done
  [ -f "$src/lib/micropython-lib/README.md" ] \
    || die "MICROPYTHON_SRC=$src: lib/micropython-lib is empty (in a checkout: make -C ports/unix submodules)"
}

if [ "${1:-}" = "--check" ]; then
  check_tree "${2:-}"
  exit 0
fi
if [ "${1:-}" = "--stamp" ]; then
  # make's dependency on the tree: the file is rewritten (so newer than the builds) when it names
  # another tree, or when a file of the tree is newer than it.
  check_tree "${2:-}"
  id=$(cd "$2" && pwd) stamp=$3
  if [ "$(cat "$stamp" 2>/dev/null)" != "$id" ] \
     || [ -n "$(find "$id" -newer "$stamp" -type f -print -quit)" ]; then
    mkdir -p "$(dirname "$stamp")"
    echo "$id" >"$stamp"
  fi
  exit 0
fi
[ $# -ge 2 ] || die "usage: build_firmware.sh SRC OUT [FROZEN_MANIFEST]"
src=$1 out=$2 manifest=${3:-}
check_tree "$src"
src=$(cd "$src" && pwd)
here=$(pwd)
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
work=$(dirname "$out")
if [ -n "$manifest" ]; then
  [ -f "$manifest" ] || die "$manifest: no such manifest"
  manifest=$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")
fi

bash "$here/tools/ensure_packages.sh" "gcc -m32 (gcc-multilib)" \
  "echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null" gcc-multilib g++-multilib

# One build at a time in this folder (two makes in one object folder break each other).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$work/.lock"
  flock 9
fi
jobs=$(nproc 2>/dev/null || echo 2)
mpy_cross=$work/mpy-cross/mpy-cross
obj=$work/obj-$(basename "$out")
# Objects of another tree are thrown away: its files may be older than them (a tarball keeps
# its mtimes), and make would keep objects of the other tree's code.
for d in "$work/mpy-cross" "$obj"; do
  if [ -d "$d" ] && [ "$(cat "$d/.source" 2>/dev/null)" != "$src" ]; then rm -rf "$d"; fi
  mkdir -p "$d" && echo "$src" >"$d/.source"
done
echo "firmware-unix: mpy-cross from $src"
make -C "$src/mpy-cross" -j"$jobs" BUILD="$work/mpy-cross" >"$work/mpy-cross.log" 2>&1 \
  || { tail -30 "$work/mpy-cross.log" >&2; die "building mpy-cross failed (log: $work/mpy-cross.log)"; }

log=$obj.log
echo "firmware-unix: $(basename "$out")${manifest:+ (frozen: $manifest)}"
# FROZEN_MANIFEST unset: the standard variant's own manifest. MICROPY_MPYCROSS: our mpy-cross
# (the port would otherwise build one inside SRC).
make -C "$src/ports/unix" -j"$jobs" VARIANT=standard MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 \
  CC="gcc -m32" CXX="g++ -m32" LD="ld -m elf_i386" BUILD="$obj" MICROPY_MPYCROSS="$mpy_cross" \
  ${manifest:+FROZEN_MANIFEST="$manifest"} >"$log" 2>&1 \
  || { tail -30 "$log" >&2; die "building the unix port failed (log: $log)"; }

bits=$("$obj/micropython" -c "import sys; print(sys.maxsize)")
[ "$bits" = 2147483647 ] || die "$obj/micropython is not a 32-bit build (sys.maxsize $bits)"
cp "$obj/micropython" "$out.tmp" && mv "$out.tmp" "$out"
echo "firmware-unix: $out (32-bit, $(stat -c %s "$out") bytes)"
