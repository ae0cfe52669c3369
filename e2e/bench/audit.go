package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"
)

// controllerUser is datavolume-controller's identity in audit logs.
const controllerUser = "system:serviceaccount:datavolume-system:datavolume-controller"

// benchGroup serves, as CRDs, the objects each benchmark compares ours with.
const benchGroup = "bench.example.com"

// auditedGroups are the groups whose audit rules the benchmark's group
// shares: kube-apiserver records a bench.example.com request exactly as it
// records the DataVolume or VirtualMachine request it is compared with,
// so audit cost is on both sides of every ratio, not on ours alone.
var auditedGroups = []string{"cdi.kubevirt.io", "kubevirt.io"}

// benchAuditPolicy reads the shipped audit policy and writes, to dir, the
// same policy with each rule that names an audited group followed by a
// copy naming benchGroup. It returns the written file's path.
func benchAuditPolicy(shipped, dir string) (string, error) {
	b, err := os.ReadFile(shipped)
	if err != nil {
		return "", fmt.Errorf("reading the audit policy: %w", err)
	}
	var policy auditv1.Policy
	if err := yaml.UnmarshalStrict(b, &policy); err != nil {
		return "", fmt.Errorf("parsing %s: %w", shipped, err)
	}
	// The controller's writes (claims, Jobs, Events, status), so
	// BenchmarkManyDataVolumes can count them; first, since the first
	// matching rule decides.
	policy.Rules = append([]auditv1.PolicyRule{{
		Level: auditv1.LevelMetadata,
		Users: []string{controllerUser},
		Verbs: []string{"create", "update", "patch", "delete"},
	}}, withBenchGroup(policy.Rules)...)
	out, err := yaml.Marshal(&policy)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "bench-audit-policy.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return "", fmt.Errorf("writing the benchmark's audit policy: %w", err)
	}
	return path, nil
}

// withBenchGroup puts after each rule that names an audited group a copy
// for benchGroup. The copy sits next to its original, so a request of
// benchGroup meets the rules in the order a request of the group does.
func withBenchGroup(rules []auditv1.PolicyRule) []auditv1.PolicyRule {
	var out []auditv1.PolicyRule
	for _, rule := range rules {
		out = append(out, rule)
		var resources []auditv1.GroupResources
		for _, gr := range rule.Resources {
			if slices.Contains(auditedGroups, gr.Group) {
				copied := *gr.DeepCopy()
				copied.Group = benchGroup
				resources = append(resources, copied)
			}
		}
		if len(resources) > 0 {
			copied := *rule.DeepCopy()
			copied.Resources = resources
			out = append(out, copied)
		}
	}
	return out
}
