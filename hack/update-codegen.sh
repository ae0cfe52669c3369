#!/usr/bin/env bash
# Regenerates everything under pkg/generated and the zz_generated files of
# pkg/apis with k8s.io/code-generator's kube_codegen.sh, at the version go.mod
# pins. This is the only way generated code enters the repository.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
module=$(go list -m)
# A fresh machine has the module in go.sum but not yet on disk.
go mod download k8s.io/code-generator
codegen_pkg=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
# Generators are installed into a directory of ours, not the user's GOBIN.
export GOBIN="$root/_output/tools/codegen-$(go list -m -f '{{.Version}}' k8s.io/code-generator)"
mkdir -p "$GOBIN"

# shellcheck source=/dev/null
source "$codegen_pkg/kube_codegen.sh"

boilerplate="$root/hack/boilerplate.go.txt"

kube::codegen::gen_helpers \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"

report_args=(--report-filename "$root/hack/api-violations.list")
if [[ "${UPDATE_API_KNOWN_VIOLATIONS:-}" == true ]]; then report_args+=(--update-report); fi

kube::codegen::gen_openapi \
  --output-dir "$root/pkg/generated/openapi" \
  --output-pkg "$module/pkg/generated/openapi" \
  --output-model-name-file zz_generated.model_name.go \
  --extra-pkgs k8s.io/api/core/v1 \
  "${report_args[@]}" \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"

# Apply configurations of core types come from client-go, not a copy of ours.
externals="k8s.io/api/core/v1.PersistentVolumeClaimSpec:k8s.io/client-go/applyconfigurations/core/v1"
externals+=",k8s.io/api/core/v1.VolumeResourceRequirements:k8s.io/client-go/applyconfigurations/core/v1"
externals+=",k8s.io/api/core/v1.TypedLocalObjectReference:k8s.io/client-go/applyconfigurations/core/v1"
externals+=",k8s.io/api/core/v1.TypedObjectReference:k8s.io/client-go/applyconfigurations/core/v1"

kube::codegen::gen_client \
  --with-watch \
  --with-applyconfig \
  --applyconfig-externals "$externals" \
  --applyconfig-openapi-schema <(go run "$module/pkg/generated/openapi/cmd/models-schema") \
  --output-dir "$root/pkg/generated" \
  --output-pkg "$module/pkg/generated" \
  --boilerplate "$boilerplate" \
  "$root/pkg/apis"
