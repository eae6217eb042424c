#!/usr/bin/env bash
# Makes sure the system tools the tests need are present: Python 3 with venv and pip, Node.js
# with npm, ss (iproute2), and systemd-analyze (Debian's systemd package: tests/deploy.rs
# verifies the units with it, which needs no running systemd). On a fresh Debian machine some
# are missing (Debian ships venv and npm as separate packages); as root this installs them
# with apt-get, otherwise it says exactly what to run. Does nothing when everything is there.
set -euo pipefail
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv python3-pip)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "the tests need these Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
