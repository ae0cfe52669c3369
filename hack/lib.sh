# Shared settings for hack/ scripts. Source it; do not run it.

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
COREDNS_VERSION=v1.15.0
# rancher's local-path-provisioner: the local cluster's dynamic provisioner, as
# kind runs it (hack/tools/local-path-provisioner pins the same version).
LOCAL_PATH_PROVISIONER_VERSION=v0.0.30
# Tool builds are cached by version outside the clone, so a fresh clone on
# the same machine (which is what CI runs) reuses them.
DATAVOLUME_CACHE=${DATAVOLUME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datavolume}
KUBE_BIN_DIR=$DATAVOLUME_CACHE/kube-$KUBE_VERSION/bin
ETCD_BIN_DIR=$DATAVOLUME_CACHE/etcd-$ETCD_VERSION/bin
# CoreDNS is built with the plugins the local cluster uses (hack/tools/coredns).
COREDNS_BIN_DIR=$DATAVOLUME_CACHE/coredns-$COREDNS_VERSION-local/bin
LOCAL_PATH_PROVISIONER_BIN_DIR=$DATAVOLUME_CACHE/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION/bin

# log prints a timestamped progress line on stderr.
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
