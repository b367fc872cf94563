#!/usr/bin/env bash
# The README's two commands in a fresh Debian 13 (trixie) chroot, with its LibTorch 2.6; see
# check-fresh-debian.sh. Too long for .ci/run (a clean build and the suite): run it before a
# change to the build or the LibTorch code lands.
exec "$(dirname "$0")/check-fresh-debian.sh" trixie "$@"
