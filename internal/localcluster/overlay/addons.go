package overlay

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Names of the add-ons of artifacts/local-cluster.
const (
	ProvisionerNamespace = "local-path-storage"
	ProvisionerName      = "local-path-provisioner"
	provisionerConfigMap = "local-path-config"
	// helperContainer is the container the provisioner copies helper pod
	// logs from: its helper pod template must have one of this name.
	helperContainer = "helper-pod"

	// dnsService is CoreDNS's Service, at the kubelet's clusterDNS.
	dnsService = "kube-dns"

	DemoNamespace = "datavolume-demo"
	DemoName      = "demo-disk"
	// DemoDiskFileName is the name of the demo disk hack/build-images.sh makes,
	// in the images directory and on the demo server.
	DemoDiskFileName = "demo-disk.qcow2"
	// DemoDiskURL is where pods download the demo disk.
	DemoDiskURL = "http://" + DemoName + "." + DemoNamespace + ".svc/" + DemoDiskFileName
)

// Addons is what the local cluster adds to artifacts/local-cluster,
// and all it adds: the names of the images built on this machine, the
// directory on this host that provisioned volumes go in, and the image of
// the provisioner's helper pods (named inside its ConfigMap, where
// kustomize's image transformer does not reach).
type Addons struct {
	Dir    string            // kustomization.yaml and the files it names are written here
	Base   string            // artifacts/local-cluster
	Images map[string]string // base image name without tag → local reference "registry/name:tag"
	// HelperImage runs the provisioner's helper pods: a shell, mkdir,
	// chown and rm (the cloner's Debian image).
	HelperImage string
	// VolumesDir is the absolute directory of this host in which the
	// provisioner makes a directory for each volume.
	VolumesDir string
	// ClusterDNS is the kube-dns Service's address, the kubelet's
	// clusterDNS: the tenth of the Service range.
	ClusterDNS string
}

// Write writes the add-ons overlay into o.Dir.
func (o Addons) Write() error {
	if net.ParseIP(o.ClusterDNS) == nil {
		return fmt.Errorf("the cluster DNS address %q is not an IP address", o.ClusterDNS)
	}
	if !filepath.IsAbs(o.VolumesDir) {
		return fmt.Errorf("the provisioned volumes' directory %q is not absolute: pods mount it from the host", o.VolumesDir)
	}
	base, err := filepath.Rel(o.Dir, o.Base)
	if err != nil {
		return err
	}
	helperPod, err := helperPodWithImage(filepath.Join(o.Base, "local-path", "helperPod.yaml"), o.HelperImage)
	if err != nil {
		return err
	}
	// local-path-provisioner's config: one directory for every node.
	config, err := json.MarshalIndent(map[string]any{
		"nodePathMap": []map[string]any{{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": []string{o.VolumesDir}}},
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	for name, content := range map[string][]byte{"config.json": append(config, '\n'), "helperPod.yaml": helperPod} {
		if err := os.WriteFile(filepath.Join(o.Dir, name), content, 0o644); err != nil {
			return err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by the local cluster at each start: the images built on this
# machine, where provisioned volumes go and the helper pods' image, over
# artifacts/local-cluster.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
`, base)
	for _, name := range sortedKeys(o.Images) {
		newName, tag := SplitReference(o.Images[name])
		fmt.Fprintf(&b, "  - name: %s\n    newName: %s\n    newTag: %q\n", name, newName, tag)
	}
	fmt.Fprintf(&b, `generatorOptions:
  disableNameSuffixHash: true
configMapGenerator:
  - name: %s
    namespace: %s
    behavior: merge
    files:
      - config.json
      - helperPod.yaml
# Cluster DNS at the address the kubelet gives pods, in the Service range.
patches:
  - target: {kind: Service, name: %s, namespace: kube-system}
    patch: |-
      - op: replace
        path: /spec/clusterIP
        value: %s
`, provisionerConfigMap, ProvisionerNamespace, dnsService, o.ClusterDNS)
	return os.WriteFile(filepath.Join(o.Dir, "kustomization.yaml"), []byte(b.String()), 0o644)
}

// helperPodWithImage reads the helper pod template at path and returns it
// with image in its helper container.
func helperPodWithImage(path, image string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
		return nil, fmt.Errorf("reading the helper pod template %s: %w", path, err)
	}
	found := false
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == helperContainer {
			pod.Spec.Containers[i].Image = image
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("the helper pod template %s: spec.containers has no container named %q", path, helperContainer)
	}
	return yaml.Marshal(&pod)
}
