#!/usr/bin/env bash
# The README's two commands in a fresh Debian 12 (bookworm) chroot; see check-fresh-debian.sh.
exec "$(dirname "$0")/check-fresh-debian.sh" bookworm "$@"
