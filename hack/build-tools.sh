#!/usr/bin/env bash
# Builds the local cluster's Kubernetes and etcd binaries, CoreDNS and
# local-path-provisioner from the Go module proxy, cached by version under
# $DATAVOLUME_CACHE. Prints what it builds and how long each took; a cached
# binary is not rebuilt.
#
# Usage: hack/build-tools.sh [binary ...]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy coredns local-path-provisioner)
want=("${@:-${all[@]}}")

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

# build NAME DIR MODULE_DIR PACKAGE LDFLAGS
build() {
  local name=$1 dir=$2 moddir=$3 pkg=$4 ldflags=$5
  if [[ -x $dir/$name ]]; then return 0; fi
  mkdir -p "$dir"
  local start=$SECONDS
  log "building $name (first build only; kube-apiserver takes ~7 min on 2 cores)"
  # Report progress while the compiler works, so a long build is visibly alive.
  ( while sleep 30; do log "  still building $name ($((SECONDS - start))s)"; done ) &
  local ticker=$!
  local rc=0
  (cd "$moddir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$name.tmp" "$pkg") || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if (( rc != 0 )); then log "building $name failed"; return "$rc"; fi
  mv "$dir/$name.tmp" "$dir/$name"
  log "built $name in $((SECONDS - start))s"
}

for name in "${want[@]}"; do
  case $name in
    etcd) build etcd "$ETCD_BIN_DIR" "$root/hack/tools/etcd" go.etcd.io/etcd/server/v3 "-s -w" ;;
    coredns) build coredns "$COREDNS_BIN_DIR" "$root/hack/tools/coredns" . "-s -w" ;;
    local-path-provisioner)
      # Its go.mod must require the version lib.sh names, or the cache lies.
      grep -q "github.com/rancher/local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION\$" "$root/hack/tools/local-path-provisioner/go.mod" \
        || { log "hack/tools/local-path-provisioner/go.mod does not require $LOCAL_PATH_PROVISIONER_VERSION (hack/lib.sh)"; exit 2; }
      build local-path-provisioner "$LOCAL_PATH_PROVISIONER_BIN_DIR" "$root/hack/tools/local-path-provisioner" \
        github.com/rancher/local-path-provisioner "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" ;;
    kube-*|kubectl|kubelet) build "$name" "$KUBE_BIN_DIR" "$root/hack/tools/kube" "k8s.io/kubernetes/cmd/$name" "$kube_ldflags" ;;
    *) log "unknown binary $name"; exit 2 ;;
  esac
done
