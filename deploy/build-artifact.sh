#!/bin/bash
# Builds the release artifact that deploy/cloudformation/weir-aggregator.yaml installs:
#
#   weir-<version>-linux-<arch>.tar.gz
#     weir-<version>-linux-<arch>/
#       bin/weir                             the binary (release build)
#       share/weir/systemd/weir.service      the systemd unit
#       share/weir/aws/weir.conf             the aggregator config the stack installs by default
#       share/weir/aws/forward.conf          its forward input, without or with PROXY protocol
#       share/weir/aws/forward-proxy.conf
#       share/weir/aws/weir-lifecycle.sh     flush-before-termination watcher, and its unit
#       share/weir/aws/weir-lifecycle.service
#       share/weir/examples/weir.conf        the repository's default config
#       README.md, deploy-README.md
#
# Usage: deploy/build-artifact.sh [--binary PATH] [--out DIR]
#   --binary PATH  package this binary instead of building one (`make release` builds
#                  target/release/weir; the default is to run it)
#   --out DIR      where to write the tarball (default: target/artifact)
# Prints the tarball's path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=
out=target/artifact
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done

if [ -z "$binary" ]; then
  make release >&2
  binary=target/release/weir
fi
[ -x "$binary" ] || { echo "$binary is not an executable" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(uname -m)
name="weir-${version}-linux-${arch}"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
install -D -m 0755 "$binary" "$root/bin/weir"
install -D -m 0644 deploy/systemd/weir.service "$root/share/weir/systemd/weir.service"
install -D -m 0644 deploy/aws/weir.conf "$root/share/weir/aws/weir.conf"
install -D -m 0644 deploy/aws/forward.conf "$root/share/weir/aws/forward.conf"
install -D -m 0644 deploy/aws/forward-proxy.conf "$root/share/weir/aws/forward-proxy.conf"
install -D -m 0755 deploy/aws/weir-lifecycle.sh "$root/share/weir/aws/weir-lifecycle.sh"
install -D -m 0644 deploy/aws/weir-lifecycle.service "$root/share/weir/aws/weir-lifecycle.service"
install -D -m 0644 examples/weir.conf "$root/share/weir/examples/weir.conf"
install -D -m 0644 README.md "$root/README.md"
install -D -m 0644 deploy/README.md "$root/deploy-README.md"

mkdir -p "$out"
tarball="$out/$name.tar.gz"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$tarball" "$name"
echo "$tarball"
