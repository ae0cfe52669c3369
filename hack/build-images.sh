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
for input in "$ETCD_BIN_DIR/etcd" "$COREDNS_BIN_DIR/coredns" "$LOCAL_PATH_PROVISIONER_BIN_DIR/local-path-provisioner"; do
  [[ -x $input ]] || { log "missing $input: run hack/build-tools.sh $(basename "$input") first"; exit 1; }
done

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/pause" ./hack/pause
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/demo-disk-server" ./hack/demo-disk-server
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

# The quickstart's demo disk: a qcow2 of 64 MiB virtual size holding a few
# MiB of text (a header, numbered lines at 1 MiB, more at 48 MiB) and holes
# between, made by qemu-img from the same bytes each time, so the file and
# its image are reproducible. The e2e tests compare what pods download with it.
make_demo_disk() {
  local raw=$out/demo-disk.raw
  rm -f "$raw"
  truncate -s 64M "$raw"
  printf 'datavolume demo disk: 64 MiB virtual, a few MiB of text, the rest holes\n' \
    | dd of="$raw" conv=notrunc status=none
  seq 1 400000 | dd of="$raw" bs=1M seek=1 conv=notrunc iflag=fullblock status=none
  seq -f 'datavolume demo disk, line %g' 1 30000 | dd of="$raw" bs=1M seek=48 conv=notrunc iflag=fullblock status=none
  qemu-img convert -f raw -O qcow2 "$raw" "$out/demo-disk.qcow2.tmp"
  rm -f "$raw"
  mv "$out/demo-disk.qcow2.tmp" "$out/demo-disk.qcow2"
}
make_demo_disk

# Our images say where they come from (OCI annotations' keys, as labels):
# the Makefile exports VERSION and REVISION; run alone, git tells.
version=${VERSION:-$(git describe --tags --match 'v*' --dirty 2>/dev/null || echo v0.0.0-dev)}
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
labels=(--label "org.opencontainers.image.source=${SOURCE_URL:-https://github.com/datavolume/datavolume}"
  --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$revision")

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
  image "$cmd" --minimal-etc --file "$bin/$cmd:/usr/local/bin/$cmd" --entrypoint "/usr/local/bin/$cmd" "${labels[@]}"
done
image local-path-provisioner --minimal-etc --user 65532 \
  --file "$LOCAL_PATH_PROVISIONER_BIN_DIR/local-path-provisioner:/usr/local/bin/local-path-provisioner" \
  --entrypoint /usr/local/bin/local-path-provisioner
image demo-disk --minimal-etc --user 65532 --file "$bin/demo-disk-server:/usr/local/bin/demo-disk-server" \
  --file "$out/demo-disk.qcow2:/srv/demo-disk.qcow2:0644" --entrypoint /usr/local/bin/demo-disk-server
image datavolume-cloner --base-layer "$base" --file "$bin/datavolume-cloner:/usr/local/bin/datavolume-cloner" \
  --entrypoint /usr/local/bin/datavolume-cloner "${labels[@]}"

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
