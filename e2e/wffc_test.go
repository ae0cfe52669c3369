//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// With --honor-wait-for-first-consumer, a DataVolume whose claim's class
// binds on first consumer (the local cluster's "local") waits in phase
// WaitForFirstConsumer until a pod uses the claim, then fills it; the
// immediate-binding annotation skips the wait. The flag is the controller's
// (CDI's feature gate): the test sets it and puts it back. Not parallel, so
// no other test sees it.
func TestHonoredWaitForFirstConsumer(t *testing.T) {
	var args []string
	raw := kubectl(t, "get", "deployment", "datavolume-controller", "-n", "datavolume-system", "-o", "jsonpath={.spec.template.spec.containers[0].args}")
	assert.NilError(t, json.Unmarshal([]byte(raw), &args), raw)
	setArgs := func(args []string) {
		t.Helper()
		raw, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": args}})
		assert.NilError(t, err)
		kubectl(t, "patch", "deployment", "datavolume-controller", "-n", "datavolume-system", "--type=json", "-p", string(raw))
		kubectl(t, "rollout", "status", "deployment/datavolume-controller", "-n", "datavolume-system", "--timeout=3m")
	}
	setArgs(append(append([]string(nil), args...), "--honor-wait-for-first-consumer"))
	t.Cleanup(func() { setArgs(args) })

	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "wffc")
	create(t, ns, importYAML("waits", base+"/disk.raw", claimSize, ""))
	create(t, ns, strings.Replace(importYAML("now", base+"/disk.raw", claimSize, ""), "metadata:\n",
		"metadata:\n  annotations:\n    cdi.kubevirt.io/storage.bind.immediate.requested: \"true\"\n", 1))

	waitFor(t, ns, "waits", "jsonpath={.status.phase}=WaitForFirstConsumer", 2*time.Minute)
	waitFor(t, ns, "now", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "now", imgs.raw)
	// Still waiting, with no Job: nothing consumed the claim.
	dv := getDV(t, ns, "waits")
	assert.Check(t, is.Equal(string(dv.Status.Phase), "WaitForFirstConsumer"))
	assert.Check(t, is.Equal(conditionOf(dv, "Running").Reason, "WaitForFirstConsumer"))
	_, err := cluster.Kubectl(testContext(t), "", "get", "job", "importer-waits", "-n", ns)
	assert.Check(t, is.ErrorContains(err, "NotFound"))

	// A pod that uses the claim gets it bound; the import then runs.
	out, err := kubectlIn(t, `apiVersion: v1
kind: Pod
metadata:
  name: consumer
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 107
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: consumer
      image: `+clonerImage(t)+`
      imagePullPolicy: Never
      command: ["true"]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
      volumeMounts:
        - name: disk
          mountPath: /disk
  volumes:
    - name: disk
      persistentVolumeClaim:
        claimName: waits
`, "create", "-n", ns, "-f", "-")
	assert.NilError(t, err, out)
	waitFor(t, ns, "waits", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "waits", imgs.raw)
}
