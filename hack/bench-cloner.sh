#!/usr/bin/env bash
# Benchmarks the data mover (datavolume-cloner) against plain tools on the
# same files, in the same run, on loopback. Prints one line per case with
# the throughput ratio ours/baseline (baseline time / our time: higher is
# better), the goal, our peak RSS (from one more, untimed run under
# /usr/bin/time) and whether the output is sparse. Each clone over mTLS is
# followed by its floor: the same bytes between two processes over TLS,
# memory to memory (hack/tlsfloor), and the ratio a clone would reach if
# reading and writing the disks cost nothing.
#
# Usage: hack/bench-cloner.sh            (called by `make bench`)
#   BENCH_DIR=/some/dir  where to put the data (default: a fresh dir in /tmp, removed at exit)
#   BENCH_RUNS=2         runs per measurement; the fastest counts (the machines are noisy)
#   BENCH_CASES="..."    only these cases (default: all): clone-dense clone-sparse
#                        import-raw import-gz import-xz import-qcow2 import-qcow2-compressed
#                        clone-half
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-2}
work=${BENCH_DIR:-$(mktemp -d /tmp/bench-cloner.XXXXXX)}
mkdir -p "$work"
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  # A clone-target or tlsfloor recv still listening after its peer failed:
  # each background job, and what it started.
  local pid
  for pid in $(jobs -p); do
    pkill -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

for tool in curl gzip xz qemu-img cp; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run hack/install-deps.sh" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is missing (Debian package: time)" >&2; exit 1; }

log() { echo "bench: $*" >&2; }
cases=${BENCH_CASES:-clone-dense clone-sparse import-raw import-gz import-xz import-qcow2 import-qcow2-compressed clone-half}
want() { [[ " $cases " == *" $1 "* ]]; }

log "building datavolume-cloner"
(cd "$root" && go build -o "$work/datavolume-cloner" ./cmd/datavolume-cloner)
(cd "$root" && go build -o "$work/tlsfloor" ./hack/tlsfloor)
dvc=$work/datavolume-cloner

# ---------------------------------------------------------------- data
data=$work/data
mkdir -p "$data"
random() { # random <bytes>: fast pseudo-random bytes on stdout
  # openssl dies of SIGPIPE when head has enough: not a failure.
  (set +o pipefail; openssl enc -aes-128-ctr -pass pass:datavolume -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c "$1")
}
if [[ ! -e $data/.complete ]]; then # kept between runs when BENCH_DIR is set
log "making test data in $work"
random $((2 << 30)) >"$data/dense-2g.img"
random $((100 << 20)) >"$data/dense-100m.img"
# 10 GiB sparse file with 100 MiB of data: 100 x 1 MiB spread evenly.
truncate -s 10G "$data/sparse-10g.img"
for i in $(seq 0 99); do
  dd if="$data/dense-100m.img" of="$data/sparse-10g.img" bs=1M count=1 skip="$i" seek=$((i * 102)) conv=notrunc status=none
done
# 512 MiB disk, half full: 4 MiB chunks alternating random data and zeros.
: >"$data/disk.raw"
for i in $(seq 0 127); do
  if ((i % 2 == 0)); then random $((4 << 20)); else head -c $((4 << 20)) /dev/zero; fi
done >>"$data/disk.raw"
gzip -k -6 "$data/disk.raw"
xz -k -T0 -1 "$data/disk.raw"
qemu-img convert -f raw -O qcow2 "$data/disk.raw" "$data/disk.qcow2"
sync
touch "$data/.complete"
fi
if [[ ! -e $data/disk-compressed.qcow2 ]]; then
  # Cloud images are qcow2 with compressed clusters. Text compresses as
  # their files do: 4 MiB chunks of base64 alternate with zeros.
  log "making a qcow2 image with compressed clusters"
  for i in $(seq 0 127); do
    if ((i % 2 == 0)); then random $((3 << 20)) | base64 -w 0; else head -c $((4 << 20)) /dev/zero; fi
  done >"$data/text.raw"
  qemu-img convert -c -f raw -O qcow2 "$data/text.raw" "$data/disk-compressed.qcow2"
  rm "$data/text.raw"
fi

# ---------------------------------------------------------------- servers
cat >"$work/fileserver.go" <<'EOF'
// A static file server with Range support (sendfile), for the benchmark.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	os.Stdout.Close()
	panic(http.Serve(l, http.FileServer(http.Dir(os.Args[1]))))
}
EOF
(cd "$work" && GOFLAGS= GO111MODULE=off go build -o fileserver fileserver.go)
"$work/fileserver" "$data" >"$work/port" &
server_pid=$!
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
base_url="http://127.0.0.1:$(cat "$work/port")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
"$dvc" gen-certs --dir "$work/certs" >/dev/null
certs=$work/certs
out=$work/out
mkdir -p "$out"

# ---------------------------------------------------------------- timing
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
best=""
peak_rss_kb=0
# measure <cmd...>: runs the command $runs times (output dir emptied each
# time) and sets $best to the fastest wall time in seconds.
measure() {
  best=""
  for _ in $(seq "$runs"); do
    rm -rf "${out:?}"/*
    local t0 t1 e
    t0=$(now)
    "$@"
    t1=$(now)
    e=$(elapsed "$t0" "$t1")
    if [[ -z $best ]] || (($(echo "$e < $best" | bc -l))); then best=$e; fi
  done
}
# ours <rss-file> <cmd...>: runs a cloner command. In the run measure_ours
# adds for memory (rss_run=1) it runs under /usr/bin/time, which writes its
# peak RSS (KiB) to rss-file for track_rss. The timed runs go without it:
# the wrapper's own start costs 5-12 ms here, which the baselines, run
# bare, do not pay.
rss_run=0
ours() {
  local rss_file=$1
  shift
  local wrap=()
  if ((rss_run)); then wrap=(/usr/bin/time -f "%M" -o "$rss_file"); fi
  "${wrap[@]}" "$@" >>"$work/cloner.log" 2>&1 || { echo "cloner failed: $*" >&2; tail -3 "$work/cloner.log" >&2; exit 1; }
}
track_rss() {
  ((rss_run)) || return 0
  local rss
  rss=$(tail -1 "$1")
  if ((rss > peak_rss_kb)); then peak_rss_kb=$rss; fi
}
# measure_ours <cmd...>: measure, then one more, untimed run for peak RSS.
measure_ours() {
  measure "$@"
  rm -rf "${out:?}"/*
  peak_rss_kb=0
  rss_run=1
  "$@"
  rss_run=0
}
# clone <source> <target>: clone-target and clone-source over mTLS on loopback.
# The port is picked once, outside the timed region (Go listeners set
# SO_REUSEADDR, so each run can take it again).
clone_port=$(free_port)
clone() {
  local port=$clone_port
  ours "$work/rss.target" "$dvc" clone-target --listen "127.0.0.1:$port" --target "$2" \
    --tls-cert "$certs/server.crt" --tls-key "$certs/server.key" --tls-ca "$certs/ca.crt" &
  local target_pid=$!
  ours "$work/rss.source" "$dvc" clone-source --source "$1" --target-address "127.0.0.1:$port" \
    --tls-cert "$certs/client.crt" --tls-key "$certs/client.key" --tls-ca "$certs/ca.crt"
  wait "$target_pid"
  track_rss "$work/rss.source"
  track_rss "$work/rss.target"
}
# floor <bytes>: the same bytes between two fresh processes over TLS 1.3 on
# loopback, memory to memory (hack/tlsfloor): no clone can take less.
floor() {
  "$work/tlsfloor" recv --listen "127.0.0.1:$clone_port" --certs "$certs" &
  local recv_pid=$!
  "$work/tlsfloor" send --address "127.0.0.1:$clone_port" --certs "$certs" --bytes "$1"
  wait "$recv_pid"
}
# clone_local <source> <target>: the one-pod clone, both volumes mounted in
# one Job pod: a single process, no network, no TLS.
clone_local() {
  ours "$work/rss.local" "$dvc" clone --source "$1" --target "$2"
  track_rss "$work/rss.local"
}
import() {
  ours "$work/rss.import" "$dvc" import --url "$base_url/$1" --target "$out/disk.img" --target-size 512Mi
  track_rss "$work/rss.import"
}
sparse_note() { # sparse_note <file>: allocated vs apparent size
  echo "$(du -k "$1" | cut -f1)KiB used of $(du -k --apparent-size "$1" | cut -f1)KiB"
}

results=()
# report_floor <name> <floor_s> <base_s> <kind>: the best ratio any clone
# over TLS could reach here, if reading and writing the disks cost nothing.
report_floor() {
  local ratio what=throughput
  ratio=$(echo "$3 / $2" | bc -l)
  if [[ $4 != ratio ]]; then ratio=$(echo "$2 / $3" | bc -l) what=time; fi
  results+=("$(printf '%-62s floor %5.2fs  base %6.2fs  at best %-10s %5.2fx' "$1" "$2" "$3" "$what" "$ratio")")
  printf '%s\n' "${results[-1]}" >&2
}
# report <name> <ours_s> <base_s> <goal> <kind> <note>
#   kind "ratio": prints base/ours (throughput ratio), goal is a minimum;
#   kind "times": prints ours/base (time ratio), goal is a maximum.
report() {
  local ratio verdict
  if [[ $5 == ratio ]]; then
    ratio=$(echo "$3 / $2" | bc -l)
    verdict=$( (($(echo "$ratio >= $4" | bc -l))) && echo met || echo MISSED)
    results+=("$(printf '%-62s ours %6.2fs  base %6.2fs  ours/base throughput %5.2fx  goal >= %-4s %-6s  peak RSS %4d MiB  %s' \
      "$1" "$2" "$3" "$ratio" "$4" "$verdict" $((peak_rss_kb / 1024)) "$6")")
  else
    ratio=$(echo "$2 / $3" | bc -l)
    verdict=$( (($(echo "$ratio <= $4" | bc -l))) && echo met || echo MISSED)
    results+=("$(printf '%-62s ours %6.2fs  base %6.2fs  ours/base time       %5.2fx  goal <= %-4s %-6s  peak RSS %4d MiB  %s' \
      "$1" "$2" "$3" "$ratio" "$4" "$verdict" $((peak_rss_kb / 1024)) "$6")")
  fi
  printf '%s\n' "${results[-1]}" >&2
}

# ---------------------------------------------------------------- cases
# clone_both <title> <source> <bytes sent> <baseline label> <goal> <mTLS goal> <kind> <baseline cmd...>:
# the one-pod and the mTLS clone of source, each against the baseline
# command and the same command followed by sync; then the TLS floor for
# the bytes an mTLS clone sends.
clone_both() {
  local title=$1 source=$2 bytes=$3 label=$4 one_pod_goal=$5 mtls_goal=$6 kind=$7
  shift 7
  local base base_sync mine note how goal
  measure "$@"; base=$best
  measure sh -c '"$@" && sync' sh "$@"; base_sync=$best
  for how in "one pod" mTLS; do
    if [[ $how == mTLS ]]; then
      goal=$mtls_goal
      measure_ours clone "$source" "$out/disk.img"
    else
      goal=$one_pod_goal
      measure_ours clone_local "$source" "$out/disk.img"
    fi
    mine=$best
    note=$(sparse_note "$out/disk.img")
    report "clone $title, $how vs $label" "$mine" "$base" "$goal" "$kind" "(ours fsyncs; cp does not)"
    report "clone $title, $how vs $label+sync" "$mine" "$base_sync" "$goal" "$kind" "$note"
  done
  measure floor "$bytes"
  report_floor "clone $title, TLS floor ($((bytes >> 20)) MiB) vs $label+sync" "$best" "$base_sync" "$kind"
}

if want clone-dense; then
  log "clone 2 GiB dense file -> file"
  clone_both 2GiB\ dense "$data/dense-2g.img" $((2 << 30)) "cp --sparse=always" 0.9 0.8 ratio \
    cp --sparse=always "$data/dense-2g.img" "$out/disk.img"
fi

if want clone-sparse; then
  log "clone 10 GiB sparse file with 100 MiB of data"
  clone_both 10GiB\ sparse "$data/sparse-10g.img" $((100 << 20)) "cp 100MiB dense" 2 2 times \
    cp "$data/dense-100m.img" "$out/disk.img"
fi

if want import-raw; then
  log "import over loopback HTTP: 512 MiB half-full disk"
  measure curl -sSf -o "$out/disk.img" "$base_url/disk.raw"; base=$best
  measure_ours import disk.raw; mine=$best
  report "import raw vs curl -o" "$mine" "$base" 0.9 ratio "$(sparse_note "$out/disk.img")"
fi

if want import-gz; then
  measure sh -c "curl -sSf '$base_url/disk.raw.gz' | gzip -dc > '$out/disk.img'"; base=$best
  measure_ours import disk.raw.gz; mine=$best
  report "import raw.gz vs curl | gzip -dc" "$mine" "$base" 2.5 ratio "$(sparse_note "$out/disk.img")"
fi

if want import-xz; then
  measure sh -c "curl -sSf '$base_url/disk.raw.xz' | xz -dc > '$out/disk.img'"; base=$best
  measure_ours import disk.raw.xz; mine=$best
  report "import raw.xz vs curl | xz -dc" "$mine" "$base" 0.9 ratio "$(sparse_note "$out/disk.img")"
fi

# import_qcow2 <file> <title>: ours against curl -o && qemu-img convert, and
# the same made durable: qemu-img never flushes its output (its cache mode
# is unsafe); ours is synced before it exits 0.
import_qcow2() {
  local convert="curl -sSf -o '$out/f.qcow2' '$base_url/$1' && qemu-img convert -O raw '$out/f.qcow2' '$out/disk.img'"
  local base base_sync mine note
  measure sh -c "$convert"; base=$best
  measure sh -c "$convert && sync '$out/disk.img'"; base_sync=$best
  measure_ours import "$1"; mine=$best
  note=$(sparse_note "$out/disk.img")
  report "import $2 vs curl -o && qemu-img convert" "$mine" "$base" 1.0 ratio "(ours fsyncs; qemu-img does not)"
  report "import $2 vs curl -o && qemu-img convert+sync" "$mine" "$base_sync" 1.0 ratio "$note"
}

if want import-qcow2; then
  import_qcow2 disk.qcow2 qcow2
fi

if want import-qcow2-compressed; then
  import_qcow2 disk-compressed.qcow2 "qcow2 (compressed clusters)"
fi

if want clone-half; then
  log "clone 512 MiB half-full disk over mTLS loopback"
  measure sh -c "cp --sparse=always '$data/disk.raw' '$out/disk.img' && sync"; base=$best
  measure_ours clone "$data/disk.raw" "$out/disk.img"; mine=$best
  report "clone 512MiB half-full vs cp --sparse+sync" "$mine" "$base" 0.8 ratio "$(sparse_note "$out/disk.img")"
  measure floor $((256 << 20)) # the random half; zero blocks are not sent
  report_floor "clone 512MiB half-full, TLS floor (256 MiB) vs cp --sparse+sync" "$best" "$base" ratio
fi

echo
echo "datavolume-cloner benchmark ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), best of $runs runs)"
printf '%s\n' "${results[@]}"
echo "peak RSS goal: < 256 MiB in every case"
