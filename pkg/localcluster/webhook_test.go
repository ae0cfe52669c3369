package localcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/datavolume/datavolume/pkg/webhook"
)

// The deployed configurations call the host process at the server's paths,
// trusting the cluster CA, and keep everything else as written.
func TestHostWebhookConfigurations(t *testing.T) {
	manifest := filepath.Join("..", "..", "artifacts", "deploy", "webhook", "webhookconfigurations.yaml")
	const base = "https://127.0.0.1:12345"
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	out, err := hostWebhookConfigurations(manifest, base, ca)
	assert.NilError(t, err)

	original, err := os.ReadFile(manifest)
	assert.NilError(t, err)
	wantMutating, wantValidating := decodeConfigurations(t, string(original))
	gotMutating, gotValidating := decodeConfigurations(t, out)

	var urls []string
	hosted := func(cc *admissionregistrationv1.WebhookClientConfig) {
		assert.Check(t, cc.Service == nil)
		assert.Check(t, cmp.Equal(cc.CABundle, ca))
		assert.Assert(t, cc.URL != nil)
		urls = append(urls, *cc.URL)
	}
	assert.Equal(t, len(gotMutating.Webhooks), len(wantMutating.Webhooks))
	for i := range gotMutating.Webhooks {
		hosted(&gotMutating.Webhooks[i].ClientConfig)
		gotMutating.Webhooks[i].ClientConfig = wantMutating.Webhooks[i].ClientConfig
	}
	assert.Equal(t, len(gotValidating.Webhooks), len(wantValidating.Webhooks))
	for i := range gotValidating.Webhooks {
		hosted(&gotValidating.Webhooks[i].ClientConfig)
		gotValidating.Webhooks[i].ClientConfig = wantValidating.Webhooks[i].ClientConfig
	}
	assert.DeepEqual(t, urls, []string{
		base + webhook.MutateDataVolumesPath,
		base + webhook.ValidateDataVolumesPath,
		base + webhook.ValidateVirtualMachinesPath,
	})
	assert.DeepEqual(t, gotMutating, wantMutating)
	assert.DeepEqual(t, gotValidating, wantValidating)
}

func TestHostWebhookConfigurationsRefusesOtherKinds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "configs.yaml")
	assert.NilError(t, os.WriteFile(path, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), 0o644))
	_, err := hostWebhookConfigurations(path, "https://127.0.0.1:1", nil)
	assert.ErrorContains(t, err, "unexpected v1 ConfigMap")
}

// decodeConfigurations reads the one mutating and one validating
// configuration of a YAML stream.
func decodeConfigurations(t *testing.T, stream string) (m admissionregistrationv1.MutatingWebhookConfiguration, v admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	var docs []string
	for _, doc := range strings.Split(stream, "\n---\n") {
		if strings.Contains(doc, "kind:") {
			docs = append(docs, doc)
		}
	}
	assert.Equal(t, len(docs), 2, "documents: %q", docs)
	assert.NilError(t, yaml.UnmarshalStrict([]byte(docs[0]), &m))
	assert.NilError(t, yaml.UnmarshalStrict([]byte(docs[1]), &v))
	assert.Equal(t, m.Kind, "MutatingWebhookConfiguration")
	assert.Equal(t, v.Kind, "ValidatingWebhookConfiguration")
	return m, v
}
