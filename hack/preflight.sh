#!/usr/bin/env bash
# Checks, in a second or two and before any build, what `make run` and
# `make test` need from this machine that they cannot install themselves,
# and names each missing thing with how to fix it. Exits 1 when something
# is missing; prints nothing when all is well (notes go to stderr).
#
# The cluster's ports are picked free at start, so none is checked here.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"

problems=()
problem() { problems+=("$1"); }
note() { printf 'preflight: %s\n' "$1" >&2; }

# Linux with apt: the node is real (containerd, runc, iptables, loop devices),
# and hack/install-deps.sh installs its Debian packages.
if [[ $(uname -s) != Linux ]]; then
  problem "this is $(uname -s): the local cluster runs a real Linux node; use a Linux machine or VM (Debian or Ubuntu)"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  problem "no apt-get: hack/install-deps.sh installs Debian packages (containerd, runc, CNI plugins, qemu-utils, ...); use Debian or Ubuntu, or install the packages it lists by hand"
fi

# Root: containerd, mounts, loop devices, network namespaces and iptables.
if (( EUID != 0 )); then
  problem "running as $(id -un 2>/dev/null || echo "uid $EUID"), not root: the node's containerd, mounts, loop devices and iptables need root; run 'sudo -E env PATH=\"\$PATH\" make run'"
fi

# Go, at least the version go.mod names; install-deps.sh does not install it.
want=$(awk '$1 == "go" { print $2; exit }' "$root/go.mod")
if ! command -v go >/dev/null 2>&1; then
  problem "no Go on PATH: install Go $want or newer from https://go.dev/dl/ (e.g. into /usr/local/go) and put its bin directory on PATH"
else
  have=$(go env GOVERSION 2>/dev/null); have=${have#go}
  if [[ $(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1) != "$want" ]]; then
    problem "Go $have is older than the $want go.mod needs: install a newer one from https://go.dev/dl/"
  fi
fi

# cgroups: the kubelet and containerd run with the cgroupfs driver on either
# layout; only v1 has been run for real (README: The local cluster).
case $(stat -fc %T /sys/fs/cgroup 2>/dev/null) in
  cgroup2fs) note "cgroup v2 (unified): supported by the kubelet, but the local cluster has been run for real on cgroup v1 only" ;;
  tmpfs) ;;
  *) problem "no cgroup hierarchy at /sys/fs/cgroup: the kubelet needs cgroups (v1 or v2) mounted" ;;
esac

# Kernel features the node uses: loop devices (Block volumes), overlayfs
# (containerd's snapshots), bridge netfilter (Services through the bridge).
kernel_feature() {
  local what=$1 present=$2 module=$3
  if eval "$present"; then return; fi
  if (( EUID == 0 )) && modprobe "$module" 2>/dev/null && eval "$present"; then return; fi
  problem "no $what: load it with 'modprobe $module' (a container without it cannot run the node)"
}
kernel_feature "loop device support" "[[ -e /dev/loop-control ]]" loop
kernel_feature "overlay filesystem" "grep -qw overlay /proc/filesystems" overlay
kernel_feature "bridge netfilter" "[[ -d /proc/sys/net/bridge ]]" br_netfilter

# Disk: the first build of the cluster's tools and images takes several GiB
# in the cache; each run's cluster and test data a few more.
cache=$DATAVOLUME_CACHE
probe=$cache
while [[ ! -d $probe ]]; do probe=$(dirname "$probe"); done
free_gib=$(( $(df -Pk "$probe" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
need_gib=4
[[ -x $KUBE_BIN_DIR/kube-apiserver ]] || need_gib=12
if (( free_gib < need_gib )); then
  problem "$free_gib GiB free under $probe, $need_gib GiB needed (the cluster tools' build cache and the cluster's volumes): free some space or set DATAVOLUME_CACHE to a larger disk"
fi

if (( ${#problems[@]} > 0 )); then
  printf 'preflight: this machine cannot run the local cluster yet:\n' >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi
