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

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/pause" ./hack/pause
go build -o "$bin/imagebuild" ./hack/imagebuild

# The cloner's base: Debian with qemu-img and the decompressors, packed as
# one layer. Its key is everything that decides its content.
suite=bookworm
packages=qemu-utils,xz-utils,zstd,gzip,ca-certificates
base_version=1
key=$(printf '%s\n' "$suite" minbase "$packages" "$base_version" | sha256sum | cut -c1-16)
base=$DATAVOLUME_CACHE/base/debian-$suite-$key.tar
if [[ ! -f $base ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
  mirror=${mirror:-http://deb.debian.org/debian}
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
  refs[$name]=$("$bin/imagebuild" image --name "$name" --out-dir "$out" "$@")
  log "image ${refs[$name]} ($(du -h "$out/$name.tar" | cut -f1), $((SECONDS - t))s)"
}

image pause --file "$bin/pause:/pause" --entrypoint /pause --user 65535
image coredns --minimal-etc --file "$COREDNS_BIN_DIR/coredns:/coredns" --entrypoint /coredns
image etcd --minimal-etc --file "$ETCD_BIN_DIR/etcd:/usr/local/bin/etcd" --entrypoint /usr/local/bin/etcd
for cmd in datavolume-apiserver datavolume-webhook; do
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
