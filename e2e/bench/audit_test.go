package bench

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gotest.tools/v3/assert"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"
)

// The benchmark's policy is the shipped one with every rule for our groups
// repeated, right after it, for bench.example.com, after one first rule
// that records the controller's writes; nothing else changes.
func TestBenchAuditPolicy(t *testing.T) {
	shipped := filepath.Join("..", "..", "artifacts", "deploy", "audit-policy.yaml")
	path, err := benchAuditPolicy(shipped, t.TempDir())
	assert.NilError(t, err)

	read := func(p string) auditv1.Policy {
		b, err := os.ReadFile(p)
		assert.NilError(t, err)
		var policy auditv1.Policy
		assert.NilError(t, yaml.UnmarshalStrict(b, &policy))
		return policy
	}
	orig, bench := read(shipped), read(path)
	assert.DeepEqual(t, bench.OmitStages, orig.OmitStages)

	want := []auditv1.PolicyRule{{Level: auditv1.LevelMetadata, Users: []string{controllerUser},
		Verbs: []string{"create", "update", "patch", "delete"}}}
	copies := 0
	for _, rule := range orig.Rules {
		want = append(want, rule)
		if len(rule.Resources) > 0 && (rule.Resources[0].Group == "cdi.kubevirt.io" || rule.Resources[0].Group == "kubevirt.io") {
			c := *rule.DeepCopy()
			c.Resources[0].Group = "bench.example.com"
			want = append(want, c)
			copies++
		}
	}
	assert.Assert(t, copies >= 4, "the shipped policy has rules for DataVolumes and VirtualMachines")
	assert.DeepEqual(t, bench.Rules, want)

	// VirtualMachine creates are recorded at the same level in both groups.
	levelOf := func(group, resource, verb string) auditv1.Level {
		for _, rule := range bench.Rules {
			for _, gr := range rule.Resources {
				if gr.Group == group && (len(gr.Resources) == 0 || slices.Contains(gr.Resources, resource)) &&
					(len(rule.Verbs) == 0 || slices.Contains(rule.Verbs, verb)) {
					return rule.Level
				}
			}
		}
		return auditv1.LevelNone
	}
	for _, resource := range []string{"virtualmachines", "datavolumes"} {
		group := "kubevirt.io"
		if resource == "datavolumes" {
			group = "cdi.kubevirt.io"
		}
		assert.Equal(t, levelOf("bench.example.com", resource, "create"), levelOf(group, resource, "create"), resource)
	}
}
