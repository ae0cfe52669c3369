package localcluster

import (
	"fmt"
	"github.com/datavolume/datavolume/internal/localcluster/pki"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig that reaches server as the holder of
// the client certificate.
func writeKubeconfig(path, server string, caPEM []byte, client pki.KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: client.CertPEM, ClientKeyData: client.KeyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user"}
	cfg.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// writeWebhookAdmissionConfig writes an AdmissionConfiguration under dir
// whose webhook plugins present client's certificate to the webhook Service
// named host (kube-apiserver looks the credentials up by that name), and
// returns its path.
func writeWebhookAdmissionConfig(dir, host string, client pki.KeyPair) (string, error) {
	kubeconfig := filepath.Join(dir, "admission-webhooks.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.AuthInfos[host] = &clientcmdapi.AuthInfo{ClientCertificateData: client.CertPEM, ClientKeyData: client.KeyPEM}
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		return "", fmt.Errorf("writing kubeconfig %s: %w", kubeconfig, err)
	}
	path := filepath.Join(dir, "admission.yaml")
	plugin := func(name string) string {
		return fmt.Sprintf(`  - name: %s
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: %s
`, name, kubeconfig)
	}
	config := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n" +
		plugin("MutatingAdmissionWebhook") + plugin("ValidatingAdmissionWebhook")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}
