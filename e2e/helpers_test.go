//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"k8s.io/client-go/tools/clientcmd"

	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
)

// repoFile is a file of the repository, for kubectl -f.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", rel))
	assert.NilError(t, err)
	return p
}

// kubectl runs the real kubectl as the admin and fails the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cluster.Kubectl(testContext(t), "", args...)
	assert.NilError(t, err)
	return out
}

// kubectlIn runs kubectl with stdin.
func kubectlIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return cluster.Kubectl(testContext(t), stdin, args...)
}

// kubectlAs runs kubectl with another kubeconfig and returns its error.
func kubectlAs(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	return cluster.Kubectl(testContext(t), "", append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)
	kubectl(t, "create", "namespace", name)
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "", "delete", "namespace", name, "--wait=false")
	})
	return name
}

// cdi returns a generated clientset for the given kubeconfig (admin if empty).
func cdi(t *testing.T, kubeconfig string) *cdiclient.Clientset {
	t.Helper()
	if kubeconfig == "" {
		kubeconfig = cluster.Kubeconfig
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	assert.NilError(t, err)
	c, err := cdiclient.NewForConfig(rc)
	assert.NilError(t, err)
	return c
}

// getJSON runs kubectl get -o json and decodes the result into out.
func getJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	raw := kubectl(t, append([]string{"get", "-o", "json"}, args...)...)
	assert.NilError(t, json.Unmarshal([]byte(raw), out), raw)
}

// eventually retries check until it passes or the timeout ends.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeTemp writes content to a file in the test's temp dir.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	assert.NilError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// cloneYAML is a DataVolume in ns cloning claim of sourceNamespace into a
// spec.pvc of size.
func cloneYAML(name, ns, sourceNamespace, claim, size string) string {
	return `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: ` + name + `
  namespace: ` + ns + `
spec:
  source:
    pvc:
      namespace: ` + sourceNamespace + `
      name: ` + claim + `
  pvc:
    accessModes: ["ReadWriteOnce"]
    resources:
      requests:
        storage: ` + size + `
`
}

// apiserverLog is the log of datavolume-apiserver's current pod.
func apiserverLog(t *testing.T) string {
	t.Helper()
	return kubectl(t, "logs", "-n", "datavolume-system", "deployment/datavolume-apiserver", "--tail=-1")
}
