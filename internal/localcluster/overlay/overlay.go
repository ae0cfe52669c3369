// Package overlay writes the kustomize overlays the local cluster applies
// over the repository's manifests: artifacts/deploy with the images, the
// certificates and keys made on this machine, and artifacts/local-cluster's
// add-ons with the node's own settings. Nothing else differs from what a
// user deploys.
package overlay

import (
	"encoding/base64"
	"fmt"
	"github.com/datavolume/datavolume/internal/localcluster/pki"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Names of our objects, as in artifacts/deploy.
const (
	SystemNamespace = "datavolume-system"
	APIServerName   = "datavolume-apiserver"
	WebhookName     = "datavolume-webhook"
	ControllerName  = "datavolume-controller"
)

// Deploy is what the local cluster adds to artifacts/deploy, and all
// it adds: the names of the images built on this machine, the certificate
// material and grant keys, and the host directory that receives
// datavolume-apiserver's audit log. The rest is the manifests a user deploys.
type Deploy struct {
	Dir    string            // kustomization.yaml and the files it names are written here
	Base   string            // artifacts/deploy
	Images map[string]string // base image name without tag → local reference "registry/name:tag"
	// CAPEM is the CA of both serving certificates: the caBundle of the
	// APIServices and of the webhook configurations.
	CAPEM                       []byte
	APIServerCert, APIServerKey []byte // for datavolume-apiserver.datavolume-system.svc
	WebhookCert, WebhookKey     []byte // for datavolume-webhook.datavolume-system.svc
	// Etcd is the certificate of datavolume-apiserver's etcd, EtcdClient
	// the apiserver's client certificate for it, EtcdCAPEM their CA.
	Etcd, EtcdClient pki.KeyPair
	EtcdCAPEM        []byte
	// WebhookClient is datavolume-apiserver's client certificate for the
	// webhook; WebhookClientCAPEM the CA the webhook checks callers with.
	WebhookClient      pki.KeyPair
	WebhookClientCAPEM []byte
	CloneGrantKeys     map[string][]byte
	// CloneGrantPublicKeys are their public halves, for the controller.
	CloneGrantPublicKeys map[string][]byte
	AuditLogDir          string
	// ClonerImage is the image datavolume-controller runs its Jobs with.
	ClonerImage string
	// InsecureRegistries are registry hosts the Jobs reach over plain HTTP.
	InsecureRegistries []string
	// ControllerArgs are added to datavolume-controller's.
	ControllerArgs []string
}

// The webhooks of artifacts/deploy/webhook/webhookconfigurations.yaml, in
// order: a JSON patch addresses them by index.
var (
	mutatingWebhooks   = []string{"datavolumes.mutate.cdi.kubevirt.io"}
	validatingWebhooks = []string{"datavolumes.validate.cdi.kubevirt.io", "clone.cdi.kubevirt.io"}
)

func (o Deploy) Write() error {
	base, err := filepath.Rel(o.Dir, o.Base)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "secrets"), 0o700); err != nil {
		return err
	}
	secret := func(name string, data []byte) (string, error) {
		rel := filepath.Join("secrets", name)
		return rel, os.WriteFile(filepath.Join(o.Dir, rel), data, 0o600)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by the local cluster at each start: the images built on this
# machine, its certificates and grant keys, and a host directory for the
# audit log, over the manifests a user deploys.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
generatorOptions:
  disableNameSuffixHash: true
  labels:
    app.kubernetes.io/part-of: datavolume
`, base)

	b.WriteString("images:\n")
	for _, name := range sortedKeys(o.Images) {
		newName, tag := SplitReference(o.Images[name])
		fmt.Fprintf(&b, "  - name: %s\n    newName: %s\n    newTag: %q\n", name, newName, tag)
	}

	b.WriteString("secretGenerator:\n")
	for _, s := range []struct {
		secretName string
		cert, key  []byte
		// ca is added as ca.crt when withCA.
		ca     []byte
		withCA bool
	}{
		{APIServerName + "-tls", o.APIServerCert, o.APIServerKey, nil, false},
		{WebhookName + "-tls", o.WebhookCert, o.WebhookKey, nil, false},
		{"datavolume-etcd-tls", o.Etcd.CertPEM, o.Etcd.KeyPEM, o.EtcdCAPEM, true},
		{"datavolume-etcd-client", o.EtcdClient.CertPEM, o.EtcdClient.KeyPEM, o.EtcdCAPEM, true},
		{APIServerName + "-webhook-client", o.WebhookClient.CertPEM, o.WebhookClient.KeyPEM, nil, false},
	} {
		certPath, err := secret(s.secretName+".crt", s.cert)
		if err != nil {
			return err
		}
		keyPath, err := secret(s.secretName+".key", s.key)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "  - name: %s\n    namespace: %s\n    type: kubernetes.io/tls\n    files:\n      - tls.crt=%s\n      - tls.key=%s\n",
			s.secretName, SystemNamespace, certPath, keyPath)
		if s.withCA {
			caPath, err := secret(s.secretName+"-ca.crt", s.ca)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "      - ca.crt=%s\n", caPath)
		}
	}
	fmt.Fprintf(&b, "  - name: datavolume-clone-grant-keys\n    namespace: %s\n    files:\n", SystemNamespace)
	for _, name := range sortedKeys(o.CloneGrantKeys) {
		path, err := secret("grant-key-"+name, o.CloneGrantKeys[name])
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "      - %s=%s\n", name, path)
	}

	// The webhook's client CA is no secret: a ConfigMap.
	if err := os.MkdirAll(filepath.Join(o.Dir, "public"), 0o755); err != nil {
		return err
	}
	clientCA := filepath.Join("public", "webhook-client-ca.crt")
	if err := os.WriteFile(filepath.Join(o.Dir, clientCA), o.WebhookClientCAPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(&b, "configMapGenerator:\n  - name: %s-client-ca\n    namespace: %s\n    files:\n      - ca.crt=%s\n", WebhookName, SystemNamespace, clientCA)
	// The controller verifies grants with the public keys only: a ConfigMap.
	fmt.Fprintf(&b, "  - name: datavolume-clone-grant-public-keys\n    namespace: %s\n    files:\n", SystemNamespace)
	for _, name := range sortedKeys(o.CloneGrantPublicKeys) {
		rel := filepath.Join("public", name)
		if err := os.MkdirAll(filepath.Join(o.Dir, "public"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.Dir, rel), o.CloneGrantPublicKeys[name], 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&b, "      - %s=%s\n", name, rel)
	}

	ca := base64.StdEncoding.EncodeToString(o.CAPEM)
	b.WriteString("patches:\n")
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		fmt.Fprintf(&b, `  - target:
      kind: APIService
      name: %s.cdi.kubevirt.io
    patch: |-
      - op: add
        path: /spec/caBundle
        value: %s
`, version, ca)
	}
	for _, wc := range []struct {
		kind  string
		hooks []string
	}{{"MutatingWebhookConfiguration", mutatingWebhooks}, {"ValidatingWebhookConfiguration", validatingWebhooks}} {
		fmt.Fprintf(&b, "  - target:\n      kind: %s\n      name: %s\n    patch: |-\n", wc.kind, WebhookName)
		for i, hook := range wc.hooks {
			// The test guards the index: it must still name this webhook.
			fmt.Fprintf(&b, "      - op: test\n        path: /webhooks/%d/name\n        value: %s\n", i, hook)
			fmt.Fprintf(&b, "      - op: add\n        path: /webhooks/%d/clientConfig/caBundle\n        value: %s\n", i, ca)
		}
	}
	fmt.Fprintf(&b, `  - target:
      kind: Deployment
      name: %s
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: %s
        namespace: %s
      spec:
        template:
          spec:
            volumes:
              - name: audit-log
                emptyDir: null
                hostPath:
                  path: %s
                  type: DirectoryOrCreate
`, APIServerName, APIServerName, SystemNamespace, o.AuditLogDir)
	// One replica each of the API server and the webhook (two in the base):
	// make run starts sooner, and the e2e suite reads their one log and
	// their metrics. The controller keeps its two, leader and standby.
	for _, name := range []string{APIServerName, WebhookName} {
		fmt.Fprintf(&b, "  - target:\n      kind: Deployment\n      name: %s\n    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: 1\n", name)
	}
	// One etcd member (three in the base): a one-node cluster gains nothing
	// from three on the same disk. The test op guards the argument's index.
	fmt.Fprintf(&b, `  - target:
      kind: StatefulSet
      name: datavolume-etcd
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 1
      - op: test
        path: /spec/template/spec/containers/0/args/%[1]d
        value: %[2]s
      - op: replace
        path: /spec/template/spec/containers/0/args/%[1]d
        value: %[3]s
`, etcdInitialClusterArg, etcdInitialCluster(3), etcdInitialCluster(1))
	// The controller's Jobs run the cloner image built here; its args take
	// the insecure registries on top of the base's.
	fmt.Fprintf(&b, `  - target:
      kind: Deployment
      name: %[1]s
    patch: |-
      - op: test
        path: /spec/template/spec/containers/0/env/1/name
        value: CLONER_IMAGE
      - op: replace
        path: /spec/template/spec/containers/0/env/1/value
        value: %[2]s
`, ControllerName, o.ClonerImage)
	for _, registry := range o.InsecureRegistries {
		fmt.Fprintf(&b, "      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        value: --insecure-registry=%s\n", registry)
	}
	// No KubeVirt here: the controller makes VMs' template DataVolumes.
	b.WriteString("      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        value: --vm-templates\n")
	for _, arg := range o.ControllerArgs {
		fmt.Fprintf(&b, "      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        value: %s\n", arg)
	}
	return os.WriteFile(filepath.Join(o.Dir, "kustomization.yaml"), []byte(b.String()), 0o644)
}

// etcdInitialClusterArg is the index of --initial-cluster among the etcd
// container's arguments in artifacts/deploy/apiserver/etcd.yaml.
const etcdInitialClusterArg = 6

// etcdInitialCluster is the --initial-cluster argument of members
// datavolume-etcd-0 … n-1, as the StatefulSet names them.
func etcdInitialCluster(members int) string {
	urls := make([]string, members)
	for i := range urls {
		urls[i] = fmt.Sprintf("datavolume-etcd-%[1]d=https://datavolume-etcd-%[1]d.datavolume-etcd.%[2]s.svc:2380", i, SystemNamespace)
	}
	return "--initial-cluster=" + strings.Join(urls, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SplitReference splits "registry/name:tag" into name and tag.
func SplitReference(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}
