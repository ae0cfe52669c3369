//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/datavolume/datavolume/internal/localcluster/overlay"
)

// A filesystem claim in the default StorageClass `local` with nothing made
// for it is provisioned by local-path-provisioner once a pod uses it: a
// `local` volume in a directory under the cluster's state directory, owned
// by CDI's qemu user and not world-writable, which a pod running as that
// user (restricted, fsGroup 107) writes to. Deleting the claim deletes the
// volume and its directory.
func TestFilesystemClaimIsProvisioned(t *testing.T) {
	ns := namespace(t, "provision")
	claim(t, ns, "data", "Filesystem", "64Mi")
	runRestrictedJob(t, ns, "writer", "data", true, `printf 'written by uid %s\n' "$(id -u)" > /data/hello && sync`)

	pv := provisionedVolume(t, ns, "data")
	dir, err := cluster.ProvisionedVolumePath(&pv)
	assert.NilError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "hello"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got), "written by uid 107\n"))
	checkOwner(t, dir, 107, 107, 0o2770)

	kubectl(t, "delete", "job", "writer", "-n", ns, "--cascade=foreground", "--wait=true")
	kubectl(t, "delete", "pvc", "data", "-n", ns, "--wait=true")
	eventually(t, 90*time.Second, func() error {
		if out, _ := cluster.Kubectl(testContext(t), "", "get", "pv", pv.Name, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
			return errorf("%s still exists", out)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			return errorf("%s is still there: %v", dir, err)
		}
		return nil
	})
	// The helper pods that made and removed the directory are gone too.
	eventually(t, 30*time.Second, func() error {
		out, err := cluster.Kubectl(testContext(t), "", "get", "pods", "-n", "local-path-storage", "-l", "app.kubernetes.io/name=local-path-helper", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return errorf("helper pods: %q %v", out, err)
		}
		return nil
	})
}

// A pod running as CDI's qemu user without an fsGroup writes to a
// provisioned volume too, as its owner, and what it makes stays in group
// 107 (the directory is set-group-ID), as the helper pod made it.
func TestProvisionedVolumeBelongsToQemuUser(t *testing.T) {
	ns := namespace(t, "owner")
	claim(t, ns, "data", "Filesystem", "64Mi")
	runRestrictedJob(t, ns, "writer", "data", false, `mkdir /data/sub && printf 'no fsGroup\n' > /data/sub/hello && sync`)

	pv := provisionedVolume(t, ns, "data")
	dir, err := cluster.ProvisionedVolumePath(&pv)
	assert.NilError(t, err)
	checkOwner(t, dir, 107, 107, 0o2770)
	checkOwner(t, filepath.Join(dir, "sub"), 107, 107, 0o2755)
	got, err := os.ReadFile(filepath.Join(dir, "sub", "hello"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(got), "no fsGroup\n"))
}

// provisionedVolume returns the PersistentVolume bound to claim name of ns,
// which local-path-provisioner must have made for it.
func provisionedVolume(t *testing.T, ns, name string) corev1.PersistentVolume {
	t.Helper()
	var pvc corev1.PersistentVolumeClaim
	getJSON(t, &pvc, "pvc", name, "-n", ns)
	assert.Equal(t, pvc.Status.Phase, corev1.ClaimBound)
	var pv corev1.PersistentVolume
	getJSON(t, &pv, "pv", pvc.Spec.VolumeName)
	assert.Check(t, is.Equal(pv.Annotations["pv.kubernetes.io/provisioned-by"], "rancher.io/local-path"), "made by the provisioner, not beforehand")
	assert.Check(t, is.Equal(pv.Spec.StorageClassName, "local"))
	assert.Check(t, is.Equal(pv.Spec.PersistentVolumeReclaimPolicy, corev1.PersistentVolumeReclaimDelete))
	return pv
}

// checkOwner checks the owner, group and permission bits of path.
func checkOwner(t *testing.T, path string, uid, gid uint32, mode os.FileMode) {
	t.Helper()
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(path, &st))
	assert.Check(t, is.Equal(st.Uid, uid), path)
	assert.Check(t, is.Equal(st.Gid, gid), path)
	assert.Check(t, is.Equal(os.FileMode(st.Mode&0o7777), mode), "%s: mode %o", path, st.Mode&0o7777)
}

// local-path-provisioner makes no block volumes: a Block claim binds a
// volume made beforehand on a loop device (the seed's 6.10.4), which the
// scheduler prefers to provisioning.
func TestBlockClaimBindsLoopDeviceVolume(t *testing.T) {
	ns := namespace(t, "blockbind")
	device, err := cluster.AddBlockVolume(testContext(t), ns+"-block", "64Mi")
	assert.NilError(t, err)
	t.Cleanup(func() { _, _ = cluster.Kubectl(testContext(t), "", "delete", "pv", ns+"-block", "--wait=false") })
	claim(t, ns, "data", "Block", "64Mi")
	runJob(t, ns, `volumeDevices:
            - name: data
              devicePath: /dev/xvda`, `printf 'block claim on a loop device' | dd of=/dev/xvda conv=fsync,notrunc status=none`)
	assert.Equal(t, kubectl(t, "get", "pvc", "data", "-n", ns, "-o", "jsonpath={.spec.volumeName}"), ns+"-block")

	f, err := os.Open(device)
	assert.NilError(t, err)
	defer f.Close()
	want := "block claim on a loop device"
	got := make([]byte, len(want))
	_, err = f.ReadAt(got, 0)
	assert.NilError(t, err)
	assert.Equal(t, string(got), want)
}

// A Block claim with no volume to bind stays Pending, and the provisioner
// says why in an Event on the claim.
func TestBlockClaimWithoutVolumeSaysSo(t *testing.T) {
	ns := namespace(t, "blocknone")
	claim(t, ns, "data", "Block", "3Gi")
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: consumer
spec:
  restartPolicy: Never
  containers:
    - name: consumer
      image: ` + clonerImage(t) + `
      imagePullPolicy: Never
      command: ["true"]
      volumeDevices:
        - name: data
          devicePath: /dev/xvda
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: data
`
	out, err := kubectlIn(t, pod, "apply", "-n", ns, "-f", "-")
	assert.NilError(t, err, out)
	const want = "rancher.io/local-path does not support block volume provisioning"
	var events string
	eventually(t, 60*time.Second, func() error {
		events = kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=data",
			"-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message", "--no-headers")
		if !strings.Contains(events, "ProvisioningFailed") || !strings.Contains(events, want) {
			return errorf("no ProvisioningFailed event yet:\n%s", events)
		}
		return nil
	})
	t.Logf("events of the claim:\n%s", events)
	t.Logf("the pod: events %q, status %s", kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Pod",
		"-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message", "--no-headers"),
		kubectl(t, "get", "pod", "consumer", "-n", ns, "-o", "jsonpath={.status}"))
	assert.Equal(t, kubectl(t, "get", "pvc", "data", "-n", ns, "-o", "jsonpath={.status.phase}"), "Pending")
	assert.Equal(t, kubectl(t, "get", "pod", "consumer", "-n", ns, "-o", "jsonpath={.status.phase}"), "Pending")
}

// The demo disk is served in the cluster at overlay.DemoDiskURL, with
// Range requests: a pod downloads it (bash's /dev/tcp, in the cloner's
// Debian image) and gets the bytes hack/build-images.sh made.
func TestPodsDownloadTheDemoDisk(t *testing.T) {
	want, err := os.ReadFile(cluster.DemoDiskFile())
	assert.NilError(t, err)
	sum := sha256.Sum256(want)
	u, err := url.Parse(overlay.DemoDiskURL)
	assert.NilError(t, err)

	ns := namespace(t, "demodisk")
	// sh runs bash, which reads the script from the here-document.
	script := `bash <<'SCRIPT'
set -eu
fetch() {
  exec 3<>/dev/tcp/` + u.Host + `/80
  printf 'GET ` + u.Path + ` HTTP/1.0\r\nHost: ` + u.Host + `\r\n%s\r\n' "$1" >&3
  IFS= read -r status <&3
  echo "${status%$'\r'}"
  while IFS= read -r line <&3 && [ -n "${line%$'\r'}" ]; do :; done
}
fetch ''
sha256sum <&3 | cut -d' ' -f1
exec 3<&-
fetch $'Range: bytes=0-3\r\n'
head -c 4 <&3 | od -An -tx1 | tr -d ' '
SCRIPT
`
	logs := lines(runJob(t, ns, "", script))
	assert.Assert(t, is.Len(logs, 4), "job printed %q", logs)
	assert.Check(t, strings.HasSuffix(logs[0], " 200 OK"), "status %q", logs[0])
	assert.Check(t, is.Equal(logs[1], hex.EncodeToString(sum[:])), "sha256 of %s as downloaded vs as built", overlay.DemoDiskURL)
	assert.Check(t, strings.HasSuffix(logs[2], " 206 Partial Content"), "status %q", logs[2])
	assert.Check(t, is.Equal(logs[3], "514649fb"), "a range holds the qcow2 magic QFI\\xfb")
}

// runRestrictedJob runs script in the Job name, whose pod passes the
// restricted Pod Security level as uid/gid 107 (as the cloner's Jobs run),
// with fsGroup 107 if asked, and with the claim mounted at /data; and waits
// for it to complete.
func runRestrictedJob(t *testing.T, ns, name, claim string, fsGroup bool, script string) {
	t.Helper()
	group := ""
	if fsGroup {
		group = "\n        fsGroup: 107"
	}
	job := `apiVersion: batch/v1
kind: Job
metadata:
  name: ` + name + `
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 107
        runAsGroup: 107` + group + `
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: writer
          image: ` + clonerImage(t) + `
          imagePullPolicy: Never
          command: ["sh", "-c", ` + jsonString(script) + `]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: data
              mountPath: /data
      volumes:
        - name: data
          persistentVolumeClaim:
            claimName: ` + claim + `
`
	kubectl(t, "label", "namespace", ns, "--overwrite", "pod-security.kubernetes.io/enforce=restricted")
	out, err := kubectlIn(t, job, "apply", "-n", ns, "-f", "-")
	assert.NilError(t, err, out)
	if _, err := cluster.Kubectl(testContext(t), "", "wait", "-n", ns, "job/"+name, "--for=condition=Complete", "--timeout=120s"); err != nil {
		logs, _ := cluster.Kubectl(testContext(t), "", "logs", "-n", ns, "job/"+name)
		events, _ := cluster.Kubectl(testContext(t), "", "get", "events", "-A")
		t.Fatalf("job did not complete: %v\nlogs:\n%s\nevents:\n%s", err, logs, events)
	}
}
