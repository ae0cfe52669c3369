package localcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The webhook's objects, as in artifacts/deploy/webhook.
const (
	webhookName = "datavolume-webhook"
	// virtualMachineCRD is KubeVirt's; artifacts/testing has a minimal one
	// for clusters without KubeVirt.
	virtualMachineCRD = "virtualmachines.kubevirt.io"
)

// deployWebhook runs datavolume-webhook on this host as its ServiceAccount,
// with the RBAC of artifacts/deploy/webhook, the VirtualMachine CRD when the
// cluster lacks it, and both webhook configurations pointed at the host
// process. It returns once kube-apiserver (VirtualMachines) and
// datavolume-apiserver (DataVolumes) both call it.
func (c *Cluster) deployWebhook(ctx context.Context, adminHTTP *http.Client) error {
	deploy := filepath.Join(c.cfg.ArtifactsDir, "deploy", "webhook")
	for _, f := range []string{"serviceaccount.yaml", "rbac.yaml"} {
		if _, err := c.kubectlAs(ctx, c.bootstrapKubeconfig, "", "apply", "-f", filepath.Join(deploy, f)); err != nil {
			return err
		}
	}
	if err := c.ensureVirtualMachineCRD(ctx); err != nil {
		return err
	}

	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	port := ports[0]
	serving, err := c.ca.Issue(c.pkiDir, webhookName, webhookName, nil, "127.0.0.1")
	if err != nil {
		return err
	}
	// Like datavolume-apiserver, it authenticates as its ServiceAccount would.
	client, err := c.ca.Issue(c.pkiDir, webhookName+"-client", "system:serviceaccount:"+systemNamespace+":"+webhookName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace})
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.cfg.Dir, webhookName+".kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.APIServerURL, c.ca.CertPEM(), client); err != nil {
		return err
	}
	proc, err := startProcess(c.cfg.Log, c.logDir, webhookName, c.cfg.WebhookBinary,
		"--tls-cert-file", serving.CertFile, "--tls-private-key-file", serving.KeyFile,
		"--bind-address", "127.0.0.1", "--port", strconv.Itoa(port),
		"--kubeconfig", kubeconfig,
	)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, proc)
	base := "https://127.0.0.1:" + strconv.Itoa(port)
	// The configurations fail closed, so they go in only once it admits.
	if err := waitFor(ctx, webhookName, 60*time.Second, []*process{proc}, httpOK(adminHTTP, base+"/readyz")); err != nil {
		return err
	}

	configurations, err := hostWebhookConfigurations(filepath.Join(deploy, "webhookconfigurations.yaml"), base, c.ca.CertPEM())
	if err != nil {
		return err
	}
	if _, err := c.kubectlAs(ctx, c.bootstrapKubeconfig, configurations, "apply", "-f", "-"); err != nil {
		return err
	}
	// Each API server picks the configurations up from its informers; until
	// both call the webhook, objects would be admitted without it.
	for _, probe := range []struct{ what, path, body string }{
		{"datavolume-apiserver calling " + webhookName, "/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes", probeDataVolume},
		{"kube-apiserver calling " + webhookName, "/apis/kubevirt.io/v1/namespaces/default/virtualmachines", probeVirtualMachine},
	} {
		if err := waitFor(ctx, probe.what, 60*time.Second, c.procs, warnedOnDryRun(adminHTTP, c.APIServerURL+probe.path, probe.body)); err != nil {
			return err
		}
	}
	return nil
}

// ensureVirtualMachineCRD creates the testing VirtualMachine CRD unless the
// cluster has one (KubeVirt's), and waits until it is served.
func (c *Cluster) ensureVirtualMachineCRD(ctx context.Context) error {
	found, err := c.kubectlAs(ctx, c.bootstrapKubeconfig, "", "get", "crd", virtualMachineCRD, "--ignore-not-found", "-o", "name")
	if err != nil {
		return err
	}
	if strings.TrimSpace(found) != "" {
		return nil
	}
	crd := filepath.Join(c.cfg.ArtifactsDir, "testing", "virtualmachine-crd.yaml")
	if _, err := c.kubectlAs(ctx, c.bootstrapKubeconfig, "", "apply", "-f", crd); err != nil {
		return err
	}
	_, err = c.kubectlAs(ctx, c.bootstrapKubeconfig, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/"+virtualMachineCRD)
	return err
}

// hostWebhookConfigurations returns the webhook configurations of manifest
// (a YAML stream) with every clientConfig calling base (the host process)
// instead of the in-cluster Service, trusting caPEM. Everything else stays
// as written.
func hostWebhookConfigurations(manifest, base string, caPEM []byte) (string, error) {
	f, err := os.Open(manifest)
	if err != nil {
		return "", fmt.Errorf("reading webhook configurations: %w", err)
	}
	defer f.Close()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs []string
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", manifest, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		out, err := hostWebhookConfiguration(doc, base, caPEM)
		if err != nil {
			return "", fmt.Errorf("%s: %w", manifest, err)
		}
		docs = append(docs, string(out))
	}
	return strings.Join(docs, "---\n"), nil
}

// hostWebhookConfiguration rewrites one document of the stream.
func hostWebhookConfiguration(doc []byte, base string, caPEM []byte) ([]byte, error) {
	var typeMeta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &typeMeta); err != nil {
		return nil, fmt.Errorf("reading kind: %w", err)
	}
	var obj any
	var clientConfigs []*admissionregistrationv1.WebhookClientConfig
	switch typeMeta.GroupVersionKind() {
	case admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"):
		var config admissionregistrationv1.MutatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(doc, &config); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", typeMeta.Kind, err)
		}
		for i := range config.Webhooks {
			clientConfigs = append(clientConfigs, &config.Webhooks[i].ClientConfig)
		}
		obj = &config
	case admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingWebhookConfiguration"):
		var config admissionregistrationv1.ValidatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(doc, &config); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", typeMeta.Kind, err)
		}
		for i := range config.Webhooks {
			clientConfigs = append(clientConfigs, &config.Webhooks[i].ClientConfig)
		}
		obj = &config
	default:
		return nil, fmt.Errorf("unexpected %s %s among webhook configurations", typeMeta.APIVersion, typeMeta.Kind)
	}
	for _, cc := range clientConfigs {
		if cc.Service == nil {
			return nil, fmt.Errorf("a %s webhook calls no service: nothing to point at %s", typeMeta.Kind, base)
		}
		url := base
		if cc.Service.Path != nil {
			url += *cc.Service.Path
		}
		cc.Service, cc.URL, cc.CABundle = nil, &url, caPEM
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", typeMeta.Kind, err)
	}
	return out, nil
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
