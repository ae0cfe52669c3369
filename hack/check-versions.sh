#!/usr/bin/env bash
# Checks that every command built into DIR answers --version with the
# revision it was built from: what an operator reads to know what runs.
# usage: check-versions.sh DIR REVISION COMMAND...
set -euo pipefail
dir=$1 revision=$2
shift 2
for cmd in "$@"; do
  out=$("$dir/$cmd" --version 2>&1) || { echo "$cmd --version failed: $out" >&2; exit 1; }
  [[ $out == *"revision $revision"* ]] || { echo "$cmd --version says \"$out\", not revision $revision" >&2; exit 1; }
done
echo "--version: $# commands at revision $revision"
