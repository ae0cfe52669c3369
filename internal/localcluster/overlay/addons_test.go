package overlay

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The add-ons overlay names the base by a relative path, swaps the images,
// and replaces two keys of the provisioner's ConfigMap: config.json with the
// host directory for volumes, and the helper pod with the image built here
// and everything else of artifacts/local-cluster's template kept.
func TestAddonsOverlay(t *testing.T) {
	root := t.TempDir()
	base, err := filepath.Abs(filepath.Join("..", "..", "..", "artifacts", "local-cluster"))
	assert.NilError(t, err)
	o := Addons{
		Dir:         filepath.Join(root, "cluster", "addons"),
		Base:        base,
		Images:      map[string]string{"coredns": "datavolume.local/coredns:0123456789ab", "local-path-provisioner": "datavolume.local/local-path-provisioner:ba9876543210"},
		HelperImage: "datavolume.local/datavolume-cloner:aaaabbbbcccc",
		VolumesDir:  "/cluster/volumes/provisioned",
		ClusterDNS:  "10.97.0.10",
	}
	assert.NilError(t, o.Write())

	raw, err := os.ReadFile(filepath.Join(o.Dir, "kustomization.yaml"))
	assert.NilError(t, err)
	var k struct {
		APIVersion         string                                   `json:"apiVersion"`
		Kind               string                                   `json:"kind"`
		Resources          []string                                 `json:"resources"`
		GeneratorOptions   map[string]bool                          `json:"generatorOptions"`
		Images             []struct{ Name, NewName, NewTag string } `json:"images"`
		ConfigMapGenerator []struct {
			Name, Namespace, Behavior string
			Files                     []string
		} `json:"configMapGenerator"`
		Patches []struct {
			Target struct{ Kind, Name, Namespace string }
			Patch  string
		} `json:"patches"`
	}
	assert.NilError(t, yaml.UnmarshalStrict(raw, &k, yaml.DisallowUnknownFields), string(raw))
	rel, err := filepath.Rel(o.Dir, base)
	assert.NilError(t, err)
	assert.DeepEqual(t, k.Resources, []string{rel})
	assert.Check(t, is.Len(k.Images, 2))
	assert.Check(t, is.Equal(k.Images[1].Name, "local-path-provisioner"))
	assert.Check(t, is.Equal(k.Images[1].NewName, "datavolume.local/local-path-provisioner"))
	assert.Check(t, is.Equal(k.Images[1].NewTag, "ba9876543210"))
	assert.Check(t, k.GeneratorOptions["disableNameSuffixHash"], "the provisioner names its ConfigMap to helper pods")
	assert.Assert(t, is.Len(k.ConfigMapGenerator, 1))
	gen := k.ConfigMapGenerator[0]
	assert.Check(t, is.Equal(gen.Name, "local-path-config"))
	assert.Check(t, is.Equal(gen.Namespace, "local-path-storage"))
	assert.Check(t, is.Equal(gen.Behavior, "merge"))
	assert.Check(t, is.DeepEqual(gen.Files, []string{"config.json", "helperPod.yaml"}))
	assert.Assert(t, is.Len(k.Patches, 1))
	assert.Check(t, is.Equal(k.Patches[0].Target.Kind, "Service"))
	assert.Check(t, is.Equal(k.Patches[0].Target.Name, "kube-dns"))
	var ops []struct{ Op, Path, Value string }
	assert.NilError(t, yaml.UnmarshalStrict([]byte(k.Patches[0].Patch), &ops))
	assert.Check(t, is.DeepEqual(ops, []struct{ Op, Path, Value string }{{"replace", "/spec/clusterIP", "10.97.0.10"}}))

	var config struct {
		NodePathMap []struct {
			Node  string   `json:"node"`
			Paths []string `json:"paths"`
		} `json:"nodePathMap"`
	}
	raw, err = os.ReadFile(filepath.Join(o.Dir, "config.json"))
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(raw, &config))
	assert.Assert(t, is.Len(config.NodePathMap, 1))
	assert.Check(t, is.Equal(config.NodePathMap[0].Node, "DEFAULT_PATH_FOR_NON_LISTED_NODES"))
	assert.Check(t, is.DeepEqual(config.NodePathMap[0].Paths, []string{"/cluster/volumes/provisioned"}))

	var pod corev1.Pod
	raw, err = os.ReadFile(filepath.Join(o.Dir, "helperPod.yaml"))
	assert.NilError(t, err)
	assert.NilError(t, yaml.UnmarshalStrict(raw, &pod))
	assert.Assert(t, is.Len(pod.Spec.Containers, 1))
	c := pod.Spec.Containers[0]
	assert.Check(t, is.Equal(c.Name, "helper-pod"))
	assert.Check(t, is.Equal(c.Image, "datavolume.local/datavolume-cloner:aaaabbbbcccc"))
	// Kept from the template: no token, and only the capabilities the
	// scripts need.
	assert.Check(t, pod.Spec.AutomountServiceAccountToken != nil && !*pod.Spec.AutomountServiceAccountToken)
	assert.Assert(t, c.SecurityContext != nil && c.SecurityContext.Capabilities != nil)
	assert.Check(t, is.DeepEqual(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}))
	assert.Check(t, is.DeepEqual(c.SecurityContext.Capabilities.Add, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER"}))
}

func TestAddonsOverlayRefuses(t *testing.T) {
	base := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(base, "local-path"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(base, "local-path", "helperPod.yaml"),
		[]byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: other\n"), 0o644))
	o := Addons{Dir: filepath.Join(t.TempDir(), "addons"), Base: base, VolumesDir: "relative/volumes", ClusterDNS: "10.96.0.10"}
	assert.ErrorContains(t, o.Write(), `"relative/volumes" is not absolute`)
	o.VolumesDir = "/volumes"
	assert.ErrorContains(t, o.Write(), `spec.containers has no container named "helper-pod"`)
}
