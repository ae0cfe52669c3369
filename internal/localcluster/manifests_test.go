package localcluster

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// manifests returns the documents of kind in artifacts/deploy's
// subdirectories, each as YAML.
func manifests(t *testing.T, kind string) [][]byte {
	t.Helper()
	var docs [][]byte
	files, err := filepath.Glob(filepath.Join("..", "..", "artifacts", "deploy", "*", "*.yaml"))
	assert.NilError(t, err)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		assert.NilError(t, err)
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var meta struct{ Kind string }
			assert.NilError(t, yaml.Unmarshal([]byte(doc), &meta), file)
			if meta.Kind == kind {
				docs = append(docs, []byte(doc))
			}
		}
	}
	return docs
}

// deployments reads the Deployments of artifacts/deploy.
func deployments(t *testing.T) []appsv1.Deployment {
	t.Helper()
	var out []appsv1.Deployment
	for _, doc := range manifests(t, "Deployment") {
		var d appsv1.Deployment
		assert.NilError(t, yaml.UnmarshalStrict(doc, &d))
		out = append(out, d)
	}
	return out
}

// workloads reads the pod specs of the Deployments and StatefulSets of
// artifacts/deploy.
func workloads(t *testing.T) map[string]corev1.PodSpec {
	t.Helper()
	specs := map[string]corev1.PodSpec{}
	for _, d := range deployments(t) {
		specs[d.Name] = d.Spec.Template.Spec
	}
	for _, doc := range manifests(t, "StatefulSet") {
		var s appsv1.StatefulSet
		assert.NilError(t, yaml.UnmarshalStrict(doc, &s))
		specs[s.Name] = s.Spec.Template.Spec
	}
	return specs
}

// Every container asks for what it needs and is bounded in memory, runs as
// no one in particular with nothing to escalate to; a pod that calls no API
// gets no token.
func TestDeployedPodsAreLeastPrivileged(t *testing.T) {
	specs := workloads(t)
	names := make([]string, 0, len(specs))
	for name := range specs {
		names = append(names, name)
	}
	slices.Sort(names)
	assert.DeepEqual(t, names, []string{"datavolume-apiserver", "datavolume-controller", "datavolume-etcd", "datavolume-webhook"})
	for name, spec := range specs {
		assert.Check(t, spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot, name)
		for _, c := range spec.Containers {
			assert.Check(t, !c.Resources.Requests.Cpu().IsZero(), "%s/%s requests no CPU", name, c.Name)
			assert.Check(t, !c.Resources.Requests.Memory().IsZero(), "%s/%s requests no memory", name, c.Name)
			assert.Check(t, !c.Resources.Limits.Memory().IsZero(), "%s/%s has no memory limit", name, c.Name)
			sc := c.SecurityContext
			assert.Check(t, sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "%s/%s may escalate", name, c.Name)
			assert.Check(t, sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s/%s writes its root", name, c.Name)
			assert.Check(t, sc != nil && sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}), "%s/%s keeps capabilities", name, c.Name)
		}
	}
	etcd := specs["datavolume-etcd"]
	assert.Check(t, etcd.AutomountServiceAccountToken != nil && !*etcd.AutomountServiceAccountToken, "etcd calls no API: no token")
}

// The etcd of DataVolumes answers TLS clients with its own CA's
// certificate only, and only datavolume-apiserver holds one; the webhook
// answers its two callers' certificates only, and its probes have a port of
// their own; the audit log is bounded.
func TestDeployedStoreAndWebhookRequireCertificates(t *testing.T) {
	specs := workloads(t)
	args := func(name string) []string { return specs[name].Containers[0].Args }

	etcd := args("datavolume-etcd")
	for _, want := range []string{
		"--listen-client-urls=https://0.0.0.0:2379", "--client-cert-auth=true", "--trusted-ca-file=/etc/etcd/tls/ca.crt",
		"--listen-peer-urls=https://0.0.0.0:2380", "--peer-client-cert-auth=true", "--peer-trusted-ca-file=/etc/etcd/tls/ca.crt",
	} {
		assert.Check(t, is.Contains(etcd, want))
	}
	for _, arg := range etcd {
		if strings.Contains(arg, "-urls=") && !strings.HasPrefix(arg, "--listen-metrics-urls=") {
			assert.Check(t, !strings.Contains(arg, "http://"), "etcd: %s", arg)
		}
	}

	apiserver := args("datavolume-apiserver")
	for _, want := range []string{
		"--etcd-servers=https://datavolume-etcd.datavolume-system.svc:2379",
		"--etcd-certfile=/var/run/datavolume-apiserver/etcd-client/tls.crt",
		"--admission-control-config-file=/etc/datavolume-apiserver-admission/admission.yaml",
		"--audit-log-maxsize=100", "--audit-log-maxbackup=10",
	} {
		assert.Check(t, is.Contains(apiserver, want))
	}

	webhook := specs["datavolume-webhook"].Containers[0]
	assert.Check(t, is.Contains(webhook.Args, "--client-ca-file=/var/run/datavolume-webhook/client-ca/ca.crt"))
	assert.Check(t, is.Contains(webhook.Args, "--allowed-client-names=kube-apiserver,datavolume-apiserver"))
	for _, probe := range []*corev1.Probe{webhook.ReadinessProbe, webhook.LivenessProbe} {
		assert.Check(t, probe.HTTPGet.Port.String() == "health" && probe.HTTPGet.Scheme != corev1.URISchemeHTTPS,
			"a probe presents no client certificate: it must use the health port")
	}
}

// In a real cluster the API, its admission and its controller survive a
// node drained or a pod replaced: two replicas each, spread over nodes,
// and a PodDisruptionBudget keeping one.
func TestDeployedComponentsAreHighlyAvailable(t *testing.T) {
	deploy := filepath.Join("..", "..", "artifacts", "deploy")
	replicas := map[string]int32{}
	spread := map[string]bool{}
	for _, d := range deployments(t) {
		assert.Assert(t, d.Spec.Replicas != nil, d.Name)
		replicas[d.Name] = *d.Spec.Replicas
		for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
			spread[d.Name] = spread[d.Name] || (c.TopologyKey == "kubernetes.io/hostname" &&
				c.LabelSelector.MatchLabels["app.kubernetes.io/name"] == d.Name &&
				c.WhenUnsatisfiable == corev1.ScheduleAnyway)
		}
	}
	assert.DeepEqual(t, replicas, map[string]int32{"datavolume-apiserver": 2, "datavolume-webhook": 2, "datavolume-controller": 2})
	assert.DeepEqual(t, spread, map[string]bool{"datavolume-apiserver": true, "datavolume-webhook": true, "datavolume-controller": true})

	raw, err := os.ReadFile(filepath.Join(deploy, "disruption.yaml"))
	assert.NilError(t, err)
	budgets := map[string]string{}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var pdb policyv1.PodDisruptionBudget
		assert.NilError(t, yaml.UnmarshalStrict([]byte(doc), &pdb))
		budgets[pdb.Name] = pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"]
		if pdb.Name == "datavolume-etcd" {
			// Quorum: one member of three away at a time.
			assert.Assert(t, pdb.Spec.MaxUnavailable != nil, pdb.Name)
			assert.Check(t, is.Equal(pdb.Spec.MaxUnavailable.IntValue(), 1), pdb.Name)
			continue
		}
		assert.Assert(t, pdb.Spec.MinAvailable != nil, pdb.Name)
		assert.Check(t, is.Equal(pdb.Spec.MinAvailable.IntValue(), 1), pdb.Name)
	}
	assert.DeepEqual(t, budgets, map[string]string{"datavolume-apiserver": "datavolume-apiserver",
		"datavolume-webhook": "datavolume-webhook", "datavolume-controller": "datavolume-controller", "datavolume-etcd": "datavolume-etcd"})
	kustomization, err := os.ReadFile(filepath.Join(deploy, "kustomization.yaml"))
	assert.NilError(t, err)
	assert.Check(t, is.Contains(string(kustomization), "\n  - disruption.yaml\n"))
}
