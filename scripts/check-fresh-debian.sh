#!/usr/bin/env bash
# What a newcomer on a fresh Debian machine gets: makes a minimal Debian chroot with debootstrap,
# puts a clean clone of this repository's HEAD in it, and runs the README's two commands exactly
# as the README writes them (extracted from it, not copied here), then reports each one's result.
#
#   scripts/check-fresh-debian.sh SUITE [CHROOT_DIR]     e.g. bookworm (Debian 12), trixie (13)
#
# Needs root and network access to a Debian mirror (MIRROR, default deb.debian.org). The chroot's
# root is bind-mounted onto itself and gets /proc, /sys, /dev and /run, so that network namespaces
# (`ip netns`, which makes mounts private) work inside it as on a real machine. An existing
# CHROOT_DIR is reused (delete it for a fresh start). Logs go to CHROOT_DIR.log/. ONLY=tests (or
# ONLY=quickstart) runs one of the two commands, e.g. again after a fix.
set -euo pipefail
suite=${1:?usage: $0 SUITE [CHROOT_DIR]}
root=${2:-/var/tmp/ddactor-$suite}
mirror=${MIRROR:-http://deb.debian.org/debian}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
logs="$root.log"
[ "$(id -u)" -eq 0 ] || { echo "needs root (debootstrap, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
mkdir -p "$logs"

# The two commands, as the README gives them: the lines of its "Two commands" section that run
# scripts/install-deps.sh, in order (quickstart first, tests second).
mapfile -t commands < <(awk '/^## Two commands/{on=1; next} /^## /{on=0} on && /^scripts\/install-deps.sh/' \
                          "$repo/README.md")
[ "${#commands[@]}" -eq 2 ] || { echo "expected 2 commands in README.md, found ${#commands[@]}" >&2; exit 2; }

if [ ! -x "$root/usr/bin/apt-get" ]; then
  echo "== debootstrap $suite into $root"
  debootstrap --variant=minbase --include=ca-certificates,git,sudo "$suite" "$root" "$mirror" \
    > "$logs/debootstrap.log" 2>&1 || { tail -20 "$logs/debootstrap.log"; exit 1; }
fi

mounted=()
unmount_all() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap unmount_all EXIT
mount_into() {  # mount_into TARGET ARGS...: mounts once, remembers it for the cleanup
  local target=$1; shift
  mountpoint -q "$target" && return 0
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
mount_into "$root" --bind "$root"          # '/' of the chroot is a mount point, as on a machine
mount_into "$root/proc" -t proc proc
mount_into "$root/sys" -t sysfs sysfs
mount_into "$root/dev" --rbind /dev
mount_into "$root/run" -t tmpfs tmpfs
cp /etc/resolv.conf "$root/etc/resolv.conf"

echo "== clean clone of $(git -C "$repo" rev-parse --short HEAD) into $root/root/ddactor"
rm -rf "$root/root/ddactor"
git clone -q --no-local "$repo" "$root/root/ddactor"

status=0
for i in 0 1; do
  name=$([ "$i" -eq 0 ] && echo quickstart || echo tests)
  [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ] && continue
  echo "== README command $((i + 1)) ($name): ${commands[i]}"
  start=$(date +%s)
  if chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
       TERM=dumb LANG=C.UTF-8 \
       /bin/bash -c "cd /root/ddactor && ${commands[i]}" > "$logs/$name.log" 2>&1; then
    echo "   passed in $(($(date +%s) - start)) s (log: $logs/$name.log)"
  else
    echo "   FAILED after $(($(date +%s) - start)) s; last lines of $logs/$name.log:"
    tail -25 "$logs/$name.log" | sed 's/^/   | /'
    status=1
  fi
done
exit $status
