//go:build e2e

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// A pod in a tenant's namespace reaches datavolume-apiserver's etcd and the
// webhook over the pod network, trusts their CAs, and asks: etcd for its
// data, the webhook for a review. Both refuse it at the TLS handshake, for it
// holds no client certificate of theirs, and it learns nothing. (The local
// cluster's bridge network enforces no NetworkPolicy: the certificates are
// what stands here.)
func TestPodsReachNeitherEtcdNorTheWebhook(t *testing.T) {
	ns := namespace(t, "intruder")
	etcdCA, err := os.ReadFile(cluster.DataVolumeEtcdCAFile())
	assert.NilError(t, err)
	kubectl(t, "create", "configmap", "-n", ns, "etcd-ca", "--from-file=ca.crt="+writeTemp(t, "etcd-ca.crt", string(etcdCA)))

	// openssl of the cloner image's Debian; the webhook's serving certificate
	// is the cluster CA's, which every pod's service account volume holds.
	script := `ask() {
  echo "== $1"
  printf "$3" | timeout 30 openssl s_client -connect "$1" -servername "${1%:*}" -CAfile "$2" -verify_return_error -ign_eof 2>&1
  echo "== exit $?"
}
ask datavolume-etcd.datavolume-system.svc:2379 /etcd-ca/ca.crt 'GET /version HTTP/1.1\r\nHost: datavolume-etcd\r\nConnection: close\r\n\r\n'
ask datavolume-webhook.datavolume-system.svc:443 /var/run/secrets/kubernetes.io/serviceaccount/ca.crt 'POST /validate-virtualmachines HTTP/1.1\r\nHost: datavolume-webhook\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}'
`
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: intruder
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: ask
      image: ` + clonerImage(t) + `
      imagePullPolicy: Never
      command: ["bash", "-c", ` + jsonString(script) + `]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
      volumeMounts:
        - name: etcd-ca
          mountPath: /etcd-ca
  volumes:
    - name: etcd-ca
      configMap:
        name: etcd-ca
`
	eventually(t, 30*time.Second, func() error { // the namespace's default ServiceAccount comes first
		_, err := kubectlIn(t, pod, "create", "-n", ns, "-f", "-")
		return err
	})
	eventually(t, 2*time.Minute, func() error {
		if phase := kubectl(t, "get", "pod", "-n", ns, "intruder", "-o", "jsonpath={.status.phase}"); phase != "Succeeded" && phase != "Failed" {
			return errorf("pod intruder is %s", phase)
		}
		return nil
	})
	out := kubectl(t, "logs", "-n", ns, "intruder")
	t.Logf("what the pod saw:\n%s", out)

	etcd, webhook, ok := strings.Cut(out, "== datavolume-webhook")
	assert.Assert(t, ok, "the pod never asked the webhook")
	for _, answer := range []struct{ name, text string }{{"etcd", etcd}, {"the webhook", webhook}} {
		// The server's certificate was verified: the pod reached the real
		// server, which then refused the handshake for want of a client
		// certificate.
		assert.Check(t, is.Contains(answer.text, "Verify return code: 0 (ok)"), answer.name)
		assert.Check(t, is.Contains(answer.text, "alert certificate required"), answer.name)
		assert.Check(t, !strings.Contains(answer.text, "HTTP/1."), "%s answered over HTTP", answer.name)
	}
	assert.Check(t, !strings.Contains(etcd, "etcdserver"), "etcd told its version")
	assert.Check(t, !strings.Contains(webhook, "AdmissionReview"), "the webhook answered a review")
}
