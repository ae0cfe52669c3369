#!/usr/bin/env bash
# Fails when the generated code differs from what hack/update-codegen.sh
# produces from the current API types.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

generated=(pkg/generated pkg/apis hack/api-violations.list)
before=$(git status --porcelain -- "${generated[@]}")
hack/update-codegen.sh >/dev/null
after=$(git status --porcelain -- "${generated[@]}")
if [[ "$before" != "$after" ]] || ! git diff --quiet -- "${generated[@]}"; then
  echo "generated code is out of date; run 'make update-codegen' and commit the result:" >&2
  git status --short -- "${generated[@]}" >&2
  exit 1
fi
echo "generated code is up to date"
