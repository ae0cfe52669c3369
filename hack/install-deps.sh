#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the local cluster
# need, when any is missing. Idempotent and quiet when all are present.
set -euo pipefail

# command:package pairs; a package is installed when its command (or, for
# an absolute path, that file) is missing.
needs=(
  # The cloner links liblzma (xz) through cgo.
  gcc:gcc
  /usr/include/lzma.h:liblzma-dev
  qemu-img:qemu-utils
  qemu-io:qemu-utils
  docker-registry:docker-registry
  xz:xz-utils
  zstd:zstd
  gzip:gzip
  tar:tar
  curl:curl
  losetup:mount
  mkfs.ext4:e2fsprogs
  openssl:openssl
  /usr/bin/time:time
  bc:bc
  # The node: container runtime, CNI plugins, kube-proxy's and the kubelet's tools.
  containerd:containerd
  ctr:containerd
  runc:runc
  /usr/lib/cni/bridge:containernetworking-plugins
  iptables:iptables
  conntrack:conntrack
  socat:socat
  ip:iproute2
  # The node's components start in its network namespace through nsenter.
  nsenter:util-linux
  debootstrap:debootstrap
)

missing=()
for pair in "${needs[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if [[ $cmd == /* ]]; then
    [[ -e $cmd ]] || missing+=("$pkg")
  elif ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd && ! -x /sbin/$cmd ]]; then
    missing+=("$pkg")
  fi
done
if (( ${#missing[@]} == 0 )); then exit 0; fi

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
if (( EUID != 0 )); then sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# The packages' own services (docker-registry on :5000, containerd.service)
# are not what the local cluster runs: it starts its own containerd, and the
# tests their own registries on loopback. So none is started by the install
# (a policy-rc.d that refuses, unless the machine has one already) nor left
# enabled for the next boot.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# hack/install-deps.sh: start no service while installing\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  own_policy=1
fi
trap '[[ -n $own_policy ]] && $sudo rm -f "$policy"' EXIT
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ -d /run/systemd/system ]]; then
  for pkg in "${missing[@]}"; do
    case $pkg in
      docker-registry) $sudo systemctl disable --now docker-registry.service >/dev/null 2>&1 || true ;;
      containerd) $sudo systemctl disable --now containerd.service >/dev/null 2>&1 || true ;;
    esac
  done
fi
