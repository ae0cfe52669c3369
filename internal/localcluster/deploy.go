package localcluster

import (
	"context"
	"fmt"
	"github.com/datavolume/datavolume/internal/localcluster/overlay"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// virtualMachineCRD is KubeVirt's; artifacts/testing has a minimal one for
// clusters without KubeVirt.
const virtualMachineCRD = "virtualmachines.kubevirt.io"

// nonRootUID is the user our Pods run as (artifacts/deploy).
const nonRootUID = 65532

// deployAddons applies artifacts/local-cluster — cluster DNS, the StorageClass
// `local` with local-path-provisioner, and the demo disk server — with the
// images built on this machine and the provisioned volumes under the
// cluster's directory; waitForWorkloads waits for them.
func (c *Cluster) deployAddons(ctx context.Context) error {
	volumes := c.ProvisionedVolumesDir()
	if err := os.MkdirAll(c.volumesDir(), 0o755); err != nil {
		return err
	}
	// Only root on the host, and through the kubelet's mounts the pods,
	// reach into the provisioned volumes.
	if err := os.Mkdir(volumes, 0o700); err != nil {
		return err
	}
	ov := overlay.Addons{
		Dir:  filepath.Join(c.cfg.Dir, "addons"),
		Base: filepath.Join(c.cfg.ArtifactsDir, "local-cluster"),
		Images: map[string]string{
			"coredns":                c.images["coredns"],
			"local-path-provisioner": c.images["local-path-provisioner"],
			"demo-disk":              c.images["demo-disk"],
		},
		HelperImage: c.images["datavolume-cloner"],
		VolumesDir:  volumes,
		ClusterDNS:  c.ranges.DNS.String(),
	}
	if err := ov.Write(); err != nil {
		return fmt.Errorf("writing the add-ons overlay: %w", err)
	}
	_, err := c.Kubectl(ctx, "", "apply", "-k", ov.Dir)
	return err
}

// deployDataVolume deploys artifacts/deploy through the local overlay, which
// swaps in the images built here and supplies the certificates, the grant
// keys and a host directory for the audit log; then waits until our Pods are
// Ready, the aggregator serves cdi.kubevirt.io and both API servers call the
// webhook.
func (c *Cluster) deployDataVolume(ctx context.Context, p *pkiSet, adminHTTP *http.Client) error {
	// The aggregated server's etcd keeps its data on a claim of this node.
	if _, err := c.AddFilesystemVolume(ctx, "local-datavolume-etcd", "1Gi"); err != nil {
		return err
	}
	auditDir := filepath.Join(c.cfg.Dir, "apiserver-audit")
	if err := os.MkdirAll(auditDir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(auditDir, nonRootUID, nonRootUID); err != nil {
		return fmt.Errorf("handing the audit directory to the server's user: %w", err)
	}
	c.AuditLog = filepath.Join(auditDir, "audit.log")

	keysDir := c.CloneGrantKeysDir()
	if err := cloneauth.GenerateKey(keysDir, "key-1"); err != nil {
		return fmt.Errorf("generating clone grant key: %w", err)
	}
	keys, err := readDir(keysDir)
	if err != nil {
		return err
	}
	keySet, err := cloneauth.LoadKeySet(keysDir)
	if err != nil {
		return err
	}
	publicKeys, err := keySet.Public().PEM()
	if err != nil {
		return err
	}
	ov := overlay.Deploy{
		Dir:  filepath.Join(c.cfg.Dir, "deploy"),
		Base: filepath.Join(c.cfg.ArtifactsDir, "deploy"),
		Images: map[string]string{
			"datavolume-apiserver":  c.images["datavolume-apiserver"],
			"datavolume-webhook":    c.images["datavolume-webhook"],
			"datavolume-cloner":     c.images["datavolume-cloner"],
			"datavolume-controller": c.images["datavolume-controller"],
			"quay.io/coreos/etcd":   c.images["etcd"],
		},
		CAPEM:         c.ca.CertPEM(),
		APIServerCert: p.dvServing.CertPEM,
		APIServerKey:  p.dvServing.KeyPEM,
		WebhookCert:   p.webhookServing.CertPEM,
		WebhookKey:    p.webhookServing.KeyPEM,
		Etcd:          p.etcdServing,
		EtcdClient:    p.etcdClient,
		EtcdCAPEM:     p.etcdCA.CertPEM(),
		WebhookClient: p.dvWebhookClient,
		// The webhook admits kube-apiserver's and datavolume-apiserver's
		// certificates of this CA.
		WebhookClientCAPEM: p.webhookClientCA.CertPEM(),
		CloneGrantKeys:     keys,
		// The controller's: it verifies grants and cannot sign them.
		CloneGrantPublicKeys: publicKeys,
		AuditLogDir:          auditDir,
		ClonerImage:          c.images["datavolume-cloner"],
		// Test registries listen on the host's address for pods, over plain HTTP.
		InsecureRegistries: []string{c.link.Host.String()},
		ControllerArgs:     c.cfg.ControllerArgs,
	}
	if err := ov.Write(); err != nil {
		return fmt.Errorf("writing the local overlay: %w", err)
	}
	if err := c.ensureVirtualMachineCRD(ctx); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "", "apply", "-k", ov.Dir); err != nil {
		return err
	}
	if err := c.waitForWorkloads(ctx); err != nil {
		return err
	}
	discovery := c.APIServerURL + "/apis/cdi.kubevirt.io/v1beta1"
	if err := waitFor(ctx, "cdi.kubevirt.io through the aggregator", 90*time.Second, c.procs, httpOK(adminHTTP, discovery)); err != nil {
		return c.diagnosed(ctx, err)
	}
	// kube-aggregator lists an APIService's OpenAPI v3 (what kubectl explain
	// reads) some seconds after it serves its discovery.
	openAPI := c.APIServerURL + "/openapi/v3/apis/cdi.kubevirt.io/v1beta1"
	if err := waitFor(ctx, "cdi.kubevirt.io's OpenAPI through the aggregator", 90*time.Second, c.procs, httpOK(adminHTTP, openAPI)); err != nil {
		return c.diagnosed(ctx, err)
	}
	// Each API server picks the webhook configurations up from its
	// informers; until both call the webhook, objects would be admitted
	// without it.
	for _, probe := range []struct{ what, path, body string }{
		{"datavolume-apiserver calling " + overlay.WebhookName, "/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes", probeDataVolume},
		{"kube-apiserver calling " + overlay.WebhookName, "/apis/kubevirt.io/v1/namespaces/default/virtualmachines", probeVirtualMachine},
	} {
		if err := waitFor(ctx, probe.what, 60*time.Second, c.procs, warnedOnDryRun(adminHTTP, c.APIServerURL+probe.path, probe.body)); err != nil {
			return c.diagnosed(ctx, err)
		}
	}
	return nil
}

// waitForWorkloads waits until cluster DNS, the provisioner, the demo disk
// server and our Deployments and StatefulSet have all their Pods Ready.
func (c *Cluster) waitForWorkloads(ctx context.Context) error {
	for _, w := range []struct{ namespace, resource string }{
		{"kube-system", "deployment/coredns"},
		{overlay.ProvisionerNamespace, "deployment/" + overlay.ProvisionerName},
		{overlay.DemoNamespace, "deployment/" + overlay.DemoName},
		{overlay.SystemNamespace, "statefulset/datavolume-etcd"},
		{overlay.SystemNamespace, "deployment/" + overlay.APIServerName},
		{overlay.SystemNamespace, "deployment/" + overlay.WebhookName},
		{overlay.SystemNamespace, "deployment/" + overlay.ControllerName},
	} {
		if _, err := c.Kubectl(ctx, "", "rollout", "status", "-n", w.namespace, w.resource, "--timeout=180s"); err != nil {
			return c.diagnosed(ctx, err)
		}
		c.cfg.Log.Info("ready", "workload", w.namespace+"/"+w.resource, "after", c.since())
	}
	return nil
}

// DeleteAPIServerPod deletes datavolume-apiserver's Pod, as a node failure
// or an eviction would, and returns once its Deployment's replacement serves
// DataVolumes again.
func (c *Cluster) DeleteAPIServerPod(ctx context.Context) error {
	if _, err := c.Kubectl(ctx, "", "delete", "pod", "-n", overlay.SystemNamespace, "-l", "app.kubernetes.io/name="+overlay.APIServerName, "--wait=true"); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "", "rollout", "status", "-n", overlay.SystemNamespace, "deployment/"+overlay.APIServerName, "--timeout=120s"); err != nil {
		return c.diagnosed(ctx, err)
	}
	client, err := c.adminHTTPClient()
	if err != nil {
		return err
	}
	return waitFor(ctx, "datavolume-apiserver after its pod was deleted", 60*time.Second, c.procs,
		httpOK(client, c.APIServerURL+"/apis/cdi.kubevirt.io/v1beta1/datavolumes"))
}

// diagnosed writes the cluster's pods, events and the logs of every
// container to the log directory, and says so in err: a Pod that does not
// become Ready explains itself there.
func (c *Cluster) diagnosed(ctx context.Context, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	file := filepath.Join(c.logDir, "pods.txt")
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "nodes,pods,pvc,pv", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"logs", "-A", "--all-containers", "--prefix", "--tail=200", "-l", "app.kubernetes.io/part-of=datavolume"},
		{"logs", "-n", "kube-system", "--all-containers", "--prefix", "--tail=100", "-l", "k8s-app=kube-dns"},
		{"logs", "-n", overlay.ProvisionerNamespace, "--all-containers", "--prefix", "--tail=100", "-l", "app.kubernetes.io/name=" + overlay.ProvisionerName},
	} {
		out, kerr := c.Kubectl(ctx, "", args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s\n", strings.Join(args, " "), out)
		if kerr != nil {
			fmt.Fprintf(&b, "%v\n", kerr)
		}
	}
	if werr := os.WriteFile(file, []byte(b.String()), 0o644); werr != nil {
		return err
	}
	return fmt.Errorf("%w (pods, events and logs: %s)", err, file)
}

// readDir reads every regular file of dir by name.
func readDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = b
	}
	return files, nil
}

// ensureVirtualMachineCRD creates the testing VirtualMachine CRD unless the
// cluster has one (KubeVirt's), and waits until it is served.
func (c *Cluster) ensureVirtualMachineCRD(ctx context.Context) error {
	found, err := c.kubectlAs(ctx, c.Kubeconfig, "", "get", "crd", virtualMachineCRD, "--ignore-not-found", "-o", "name")
	if err != nil {
		return err
	}
	if strings.TrimSpace(found) != "" {
		return nil
	}
	crd := filepath.Join(c.cfg.ArtifactsDir, "testing", "virtualmachine-crd.yaml")
	if _, err := c.kubectlAs(ctx, c.Kubeconfig, "", "apply", "-f", crd); err != nil {
		return err
	}
	_, err = c.kubectlAs(ctx, c.Kubeconfig, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/"+virtualMachineCRD)
	return err
}

// Dry-run objects that the webhook, and only the webhook, warns about: each
// clones a claim that does not exist.
const (
	probeDataVolume = `{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"DataVolume",
"metadata":{"name":"webhook-probe"},
"spec":{"source":{"pvc":{"name":"webhook-probe-missing"}},
"pvc":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}}`
	probeVirtualMachine = `{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine",
"metadata":{"name":"webhook-probe"},
"spec":{"running":false,"template":{"spec":{}},"dataVolumeTemplates":[{"metadata":{"name":"webhook-probe"},
"spec":{"source":{"pvc":{"name":"webhook-probe-missing"}},
"pvc":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}}]}}`
)

// warnedOnDryRun creates body at url without storing it and passes when the
// answer carries an admission warning.
func warnedOnDryRun(client *http.Client, url, body string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"?dryRun=All", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("dry-run POST %s: %s: %s", url, resp.Status, answer)
		}
		if len(resp.Header.Values("Warning")) == 0 {
			return fmt.Errorf("dry-run POST %s: no admission warning yet", url)
		}
		return nil
	}
}

// DemoDiskFile is the demo disk hack/build-images.sh made, which the demo
// disk server serves at DemoDiskURL.
func (c *Cluster) DemoDiskFile() string {
	return filepath.Join(c.cfg.ImagesDir, overlay.DemoDiskFileName)
}
