#!/usr/bin/env bash
# Builds the local cluster's container images without a Docker engine, with
# go-containerregistry (hack/imagebuild), into _output/images/<name>.tar, and
# writes _output/images/images.json: logical name → reference. Our layers are
# reproducible (same binary → same digest; the tag is the digest's prefix).
# The cloner's Debian base (debootstrap + qemu-utils) is made once per
# machine and cached by its inputs under $DATAVOLUME_CACHE/base.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"
cd "$root"

out=_output/images
bin=_output/bin
mkdir -p "$out" "$bin"
start=$SECONDS

# The images take what `make build` and hack/build-tools.sh made; say which
# step to run when something is missing rather than failing half way.
for input in "$bin/datavolume-apiserver" "$bin/datavolume-webhook" "$bin/datavolume-controller" "$bin/datavolume-cloner"; do
  [[ -x $input ]] || { log "missing $input: run make build first"; exit 1; }
done
for input in "$ETCD_BIN_DIR/etcd" "$COREDNS_BIN_DIR/coredns"; do
  [[ -x $input ]] || { log "missing $input: run hack/build-tools.sh $(basename "$input") first"; exit 1; }
done

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/pause" ./hack/pause
go build -o "$bin/imagebuild" ./hack/imagebuild

# apt_mirror SUITE prints the first mirror this machine's apt uses for SUITE
# (one-line .list and deb822 .sources files; apt reads no other names), since
# apt's mirror is what is reachable here.
apt_mirror() {
  local suite=$1 found
  # deb [options] URI SUITE COMPONENTS...
  found=$(awk -v suite="$suite" '$1 == "deb" { sub(/\[[^]]*\]/, ""); $0 = $0 } $1 == "deb" && $3 == suite { print $2; exit }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  if [[ -z $found ]]; then
    found=$(awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
      { types = uris = suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = " " $i " "
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris); sub(/[ \t].*/, "", uris) }
          if ($i ~ /^Suites:/) suites = " " $i " "
        }
        if (types ~ / deb / && suites ~ (" " suite " ") && uris != "") { print uris; exit } }' \
      /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  fi
  echo "${found:-http://deb.debian.org/debian}"
}

# The cloner's base: Debian with qemu-img and the decompressors, packed as
# one layer. Its key is everything that decides its content.
suite=bookworm
packages=qemu-utils,xz-utils,zstd,gzip,ca-certificates
# Bump base_version when the packing changes (2: no ldconfig aux-cache).
base_version=2
key=$(printf '%s\n' "$suite" minbase "$packages" "$base_version" | sha256sum | cut -c1-16)
base=$DATAVOLUME_CACHE/base/debian-$suite-$key.tar
if [[ ! -f $base ]]; then
  mirror=$(apt_mirror "$suite")
  log "making the cloner's Debian base with debootstrap from $mirror (once per machine)"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/datavolume-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  t=$SECONDS
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" > "$out/debootstrap.log" 2>&1 \
    || { tail -20 "$out/debootstrap.log"; log "debootstrap failed; see $out/debootstrap.log"; exit 1; }
  mkdir -p "$(dirname "$base")"
  "$bin/imagebuild" rootfs-layer "$rootfs" "$base"
  rm -rf "$rootfs"
  log "made the base in $((SECONDS - t))s: $(du -h "$base" | cut -f1)"
fi

declare -A refs
# image NAME ARGS... builds one image and records its reference.
image() {
  local name=$1; shift
  local t=$SECONDS
  local ref state
  read -r ref state < <("$bin/imagebuild" image --name "$name" --out-dir "$out" "$@")
  [[ -n $ref ]] || { log "building image $name failed"; exit 1; }
  refs[$name]=$ref
  log "image $ref: $(du -h "$out/$name.tar" | cut -f1), $state in $((SECONDS - t))s"
}

image pause --file "$bin/pause:/pause" --entrypoint /pause --user 65535
image coredns --minimal-etc --file "$COREDNS_BIN_DIR/coredns:/coredns" --entrypoint /coredns
image etcd --minimal-etc --file "$ETCD_BIN_DIR/etcd:/usr/local/bin/etcd" --entrypoint /usr/local/bin/etcd
for cmd in datavolume-apiserver datavolume-webhook datavolume-controller; do
  image "$cmd" --minimal-etc --file "$bin/$cmd:/usr/local/bin/$cmd" --entrypoint "/usr/local/bin/$cmd"
done
image datavolume-cloner --base-layer "$base" --file "$bin/datavolume-cloner:/usr/local/bin/datavolume-cloner" \
  --entrypoint /usr/local/bin/datavolume-cloner

{
  echo "{"
  sep=""
  for name in $(printf '%s\n' "${!refs[@]}" | sort); do
    printf '%s  "%s": "%s"' "$sep" "$name" "${refs[$name]}"
    sep=$',\n'
  done
  printf '\n}\n'
} > "$out/images.json.tmp"
mv "$out/images.json.tmp" "$out/images.json"
log "images ready in $((SECONDS - start))s: $out/images.json"
