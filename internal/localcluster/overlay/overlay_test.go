package overlay

import (
	"encoding/base64"
	"github.com/datavolume/datavolume/internal/localcluster/pki"
	appsv1 "k8s.io/api/apps/v1"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"sigs.k8s.io/yaml"
)

// The overlay names the base by a relative path (kustomize loads nothing
// else from outside its root), swaps the images, carries the certificates
// and keys in files of its own, and patches caBundle and the audit volume.
func TestLocalOverlay(t *testing.T) {
	root := t.TempDir()
	o := Deploy{
		Dir:                  filepath.Join(root, "cluster", "deploy"),
		Base:                 filepath.Join(root, "repo", "artifacts", "deploy"),
		Images:               map[string]string{"datavolume-apiserver": "datavolume.local/datavolume-apiserver:0123456789ab", "quay.io/coreos/etcd": "datavolume.local/etcd:ba9876543210"},
		CAPEM:                []byte("CA PEM"),
		APIServerCert:        []byte("apiserver cert"),
		APIServerKey:         []byte("apiserver key"),
		WebhookCert:          []byte("webhook cert"),
		WebhookKey:           []byte("webhook key"),
		Etcd:                 pki.KeyPair{CertPEM: []byte("etcd cert"), KeyPEM: []byte("etcd key")},
		EtcdClient:           pki.KeyPair{CertPEM: []byte("etcd client cert"), KeyPEM: []byte("etcd client key")},
		EtcdCAPEM:            []byte("etcd CA"),
		WebhookClient:        pki.KeyPair{CertPEM: []byte("webhook client cert"), KeyPEM: []byte("webhook client key")},
		WebhookClientCAPEM:   []byte("webhook client CA"),
		CloneGrantKeys:       map[string][]byte{"key-1": []byte("0123456789abcdef0123456789abcdef")},
		CloneGrantPublicKeys: map[string][]byte{"key-1": []byte("PUBLIC KEY PEM")},
		AuditLogDir:          "/host/audit",
		ClonerImage:          "datavolume.local/datavolume-cloner:00aa",
		InsecureRegistries:   []string{"192.0.2.7"},
	}
	assert.NilError(t, o.Write())

	raw, err := os.ReadFile(filepath.Join(o.Dir, "kustomization.yaml"))
	assert.NilError(t, err)
	var k struct {
		APIVersion       string   `json:"apiVersion"`
		Kind             string   `json:"kind"`
		GeneratorOptions any      `json:"generatorOptions"`
		Resources        []string `json:"resources"`
		Images           []struct {
			Name, NewName, NewTag string
		} `json:"images"`
		SecretGenerator []struct {
			Name, Namespace, Type string
			Files                 []string
		} `json:"secretGenerator"`
		ConfigMapGenerator []struct {
			Name, Namespace string
			Files           []string
		} `json:"configMapGenerator"`
		Patches []struct {
			Target map[string]string
			Patch  string
		} `json:"patches"`
	}
	assert.NilError(t, yaml.UnmarshalStrict(raw, &k, yaml.DisallowUnknownFields), string(raw))
	assert.DeepEqual(t, k.Resources, []string{"../../repo/artifacts/deploy"})
	assert.Check(t, is.Len(k.Images, 2))
	assert.Check(t, is.Equal(k.Images[0].Name, "datavolume-apiserver"))
	assert.Check(t, is.Equal(k.Images[0].NewName, "datavolume.local/datavolume-apiserver"))
	assert.Check(t, is.Equal(k.Images[0].NewTag, "0123456789ab"))

	files := map[string]string{}
	for _, s := range k.SecretGenerator {
		assert.Check(t, is.Equal(s.Namespace, "datavolume-system"))
		for _, f := range s.Files {
			key, path, _ := strings.Cut(f, "=")
			assert.Check(t, !filepath.IsAbs(path) && !strings.HasPrefix(path, ".."), "%s is outside the overlay", path)
			b, err := os.ReadFile(filepath.Join(o.Dir, path))
			assert.NilError(t, err)
			files[s.Name+"/"+key] = string(b)
		}
	}
	assert.DeepEqual(t, files, map[string]string{
		"datavolume-apiserver-tls/tls.crt":  "apiserver cert",
		"datavolume-apiserver-tls/tls.key":  "apiserver key",
		"datavolume-webhook-tls/tls.crt":    "webhook cert",
		"datavolume-webhook-tls/tls.key":    "webhook key",
		"datavolume-clone-grant-keys/key-1": "0123456789abcdef0123456789abcdef",
		// Only datavolume-apiserver holds a client certificate of its etcd.
		"datavolume-etcd-tls/tls.crt":    "etcd cert",
		"datavolume-etcd-tls/tls.key":    "etcd key",
		"datavolume-etcd-tls/ca.crt":     "etcd CA",
		"datavolume-etcd-client/tls.crt": "etcd client cert",
		"datavolume-etcd-client/tls.key": "etcd client key",
		"datavolume-etcd-client/ca.crt":  "etcd CA",
		// Its certificate for the webhook, whose CA is public.
		"datavolume-apiserver-webhook-client/tls.crt": "webhook client cert",
		"datavolume-apiserver-webhook-client/tls.key": "webhook client key",
	})
	// The webhook's client CA and the controller's public keys are
	// ConfigMaps.
	assert.Assert(t, is.Len(k.ConfigMapGenerator, 2))
	clientCA := k.ConfigMapGenerator[0]
	assert.Check(t, is.Equal(clientCA.Name, "datavolume-webhook-client-ca"))
	assert.Check(t, is.DeepEqual(clientCA.Files, []string{"ca.crt=public/webhook-client-ca.crt"}))
	caPEM, err := os.ReadFile(filepath.Join(o.Dir, "public", "webhook-client-ca.crt"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(caPEM), "webhook client CA"))
	public := k.ConfigMapGenerator[1]
	assert.Check(t, is.Equal(public.Name, "datavolume-clone-grant-public-keys"))
	assert.Check(t, is.Equal(public.Namespace, "datavolume-system"))
	assert.Check(t, is.DeepEqual(public.Files, []string{"key-1=public/key-1"}))
	pub, err := os.ReadFile(filepath.Join(o.Dir, "public", "key-1"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(pub), "PUBLIC KEY PEM"))
	info, err := os.Stat(filepath.Join(o.Dir, "secrets", "datavolume-apiserver-tls.key"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.Mode().Perm(), os.FileMode(0o600)))

	ca := base64.StdEncoding.EncodeToString([]byte("CA PEM"))
	patched := map[string]int{}
	oneReplica := map[string]bool{}
	for _, p := range k.Patches {
		patched[p.Target["kind"]] += strings.Count(p.Patch, ca)
		if p.Target["kind"] == "StatefulSet" {
			assert.Check(t, is.Contains(p.Patch, "- op: replace\n  path: /spec/replicas\n  value: 1\n"))
			assert.Check(t, is.Contains(p.Patch, "value: "+etcdInitialCluster(1)))
			oneReplica[p.Target["name"]] = true
			continue
		}
		if strings.Contains(p.Patch, "path: /spec/replicas") {
			assert.Check(t, is.Equal(p.Patch, "- op: replace\n  path: /spec/replicas\n  value: 1"))
			oneReplica[p.Target["name"]] = true
			continue
		}
		switch p.Target["name"] {
		case "datavolume-apiserver":
			assert.Check(t, strings.Contains(p.Patch, "path: /host/audit"), p.Patch)
		case "datavolume-controller":
			assert.Check(t, strings.Contains(p.Patch, "value: datavolume.local/datavolume-cloner:00aa"), p.Patch)
			assert.Check(t, strings.Contains(p.Patch, "value: --insecure-registry=192.0.2.7"), p.Patch)
		}
	}
	assert.DeepEqual(t, patched, map[string]int{"APIService": 2, "MutatingWebhookConfiguration": 1, "ValidatingWebhookConfiguration": 2, "Deployment": 0, "StatefulSet": 0})
	// The base's two replicas of each, and three etcd members, become one
	// here; the controller keeps two.
	assert.DeepEqual(t, oneReplica, map[string]bool{"datavolume-apiserver": true, "datavolume-webhook": true, "datavolume-etcd": true})
}

// The overlay patches webhooks by index: the indexes must match the base.
func TestOverlayWebhookOrderMatchesBase(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "artifacts", "deploy", "webhook", "webhookconfigurations.yaml"))
	assert.NilError(t, err)
	var names []string
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var wc struct {
			Webhooks []struct{ Name string } `json:"webhooks"`
		}
		assert.NilError(t, yaml.Unmarshal([]byte(doc), &wc))
		for _, w := range wc.Webhooks {
			names = append(names, w.Name)
		}
	}
	assert.DeepEqual(t, names, append(append([]string{}, mutatingWebhooks...), validatingWebhooks...))
}

// The overlay makes etcd one member by replacing --initial-cluster at its
// index: the base must have the three members' there, and the StatefulSet
// three replicas.
func TestOverlayEtcdMemberMatchesBase(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "artifacts", "deploy", "apiserver", "etcd.yaml"))
	assert.NilError(t, err)
	found := false
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var sts appsv1.StatefulSet
		if yaml.Unmarshal([]byte(doc), &sts) != nil || sts.Kind != "StatefulSet" {
			continue
		}
		found = true
		assert.Check(t, is.Equal(*sts.Spec.Replicas, int32(3)))
		assert.Check(t, is.Equal(sts.Spec.PodManagementPolicy, appsv1.ParallelPodManagement), "no member is ready before a quorum is")
		args := sts.Spec.Template.Spec.Containers[0].Args
		assert.Check(t, is.Equal(args[etcdInitialClusterArg], etcdInitialCluster(3)))
	}
	assert.Assert(t, found, "no StatefulSet in etcd.yaml")
	assert.Check(t, is.Equal(etcdInitialCluster(1),
		"--initial-cluster=datavolume-etcd-0=https://datavolume-etcd-0.datavolume-etcd.datavolume-system.svc:2380"))
}

func TestSplitReference(t *testing.T) {
	for _, tc := range []struct{ ref, name, tag string }{
		{"datavolume.local/coredns:0123456789ab", "datavolume.local/coredns", "0123456789ab"},
		{"localhost:5000/pause", "localhost:5000/pause", "latest"},
		{"localhost:5000/pause:v1", "localhost:5000/pause", "v1"},
	} {
		name, tag := SplitReference(tc.ref)
		assert.Equal(t, name, tc.name, tc.ref)
		assert.Equal(t, tag, tc.tag, tc.ref)
	}
}
