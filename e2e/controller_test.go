//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// The controller's tests: real DataVolumes through kubectl, real Jobs on
// the node, and the bytes read back from the volume on this host, compared
// with `qemu-img convert` of the input padded to the volume's usable size.

// diskSize is the test disk; claimSize its DataVolumes' spec.pvc, whose
// usable size for a disk image is 30Mi (32Mi less 5.5%, aligned down).
const (
	diskSize   = 12 << 20
	claimSize  = "32Mi"
	usableSize = 30 << 20
)

// restrictedNamespace is a namespace that enforces the restricted Pod
// Security level: the controller's pods must pass it.
func restrictedNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := namespace(t, prefix)
	kubectl(t, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
	return ns
}

// importYAML is a DataVolume importing url into spec.pvc of size; source
// adds fields under spec.source.http.
func importYAML(name, url, size, extra string) string {
	return `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: ` + name + `
spec:
  source:
    http:
      url: ` + jsonString(url) + `
` + extra + `  pvc:
    accessModes: [ReadWriteOnce]
    resources:
      requests:
        storage: ` + size + `
`
}

func create(t *testing.T, ns, manifest string) {
	t.Helper()
	out, err := kubectlIn(t, manifest, "create", "-n", ns, "-f", "-")
	assert.NilError(t, err, out)
}

// waitFor waits for a DataVolume condition (kubectl wait's syntax) and
// says what happened when it does not come.
func waitFor(t *testing.T, ns, name, condition string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	out, err := cluster.Kubectl(ctx, "", "wait", "-n", ns, "dv/"+name, "--for="+condition, "--timeout="+timeout.String())
	if err != nil {
		t.Fatalf("dv/%s not %s: %v %s\n%s", name, condition, err, out, diagnose(ns))
	}
}

// diagnose collects what a failed wait needs to be understood.
func diagnose(ns string) string {
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "dv,pvc,job,pod", "-n", ns, "-o", "wide"},
		{"get", "dv", "-n", ns, "-o", "yaml"},
		{"get", "events", "-n", ns, "--sort-by=.lastTimestamp"},
		{"logs", "-n", ns, "-l", "app.kubernetes.io/managed-by=datavolume-controller", "--tail=30", "--prefix"},
		{"logs", "-n", "datavolume-system", "-l", "app.kubernetes.io/name=datavolume-controller", "--tail=40", "--prefix"},
	} {
		out, err := cluster.Kubectl(context.Background(), "", args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s%v\n", strings.Join(args, " "), out, errOrEmpty(err))
	}
	return b.String()
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func getDV(t *testing.T, ns, name string) v1beta1.DataVolume {
	t.Helper()
	var dv v1beta1.DataVolume
	getJSON(t, &dv, "dv", name, "-n", ns)
	return dv
}

func conditionOf(dv v1beta1.DataVolume, ct v1beta1.DataVolumeConditionType) v1beta1.DataVolumeCondition {
	for _, c := range dv.Status.Conditions {
		if c.Type == ct {
			return c
		}
	}
	return v1beta1.DataVolumeCondition{}
}

// volumePath is where the claim's volume is on this host: the PV's local
// or hostPath path (a directory, or a block device).
func volumePath(t *testing.T, ns, claim string) string {
	t.Helper()
	pv := kubectl(t, "get", "pvc", claim, "-n", ns, "-o", "jsonpath={.spec.volumeName}")
	assert.Assert(t, pv != "", "claim %s/%s is not bound", ns, claim)
	p := kubectl(t, "get", "pv", pv, "-o", "jsonpath={.spec.local.path}{.spec.hostPath.path}")
	assert.Assert(t, p != "", "PV %s has no local path", pv)
	return p
}

// assertImported checks the claim's disk image is the reference followed
// by zeros, usableSize bytes in all.
func assertImported(t *testing.T, ns, claim, reference string) {
	t.Helper()
	file := filepath.Join(volumePath(t, ns, claim), "disk.img")
	got, size := sha256Of(t, file, 1<<40)
	assert.Equal(t, size, int64(usableSize), "disk.img is sized to the claim's usable space")
	assert.Equal(t, got, sha256Padded(t, reference, usableSize), "disk.img holds the image's bytes, then zeros")
}

func eventsOf(t *testing.T, ns, name string) string {
	t.Helper()
	return kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=DataVolume,involvedObject.name="+name,
		"-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message", "--no-headers")
}

func TestImportEveryFormatIntoAFilesystemClaim(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "import")
	formats := []string{"disk.qcow2", "disk.raw", "disk.raw.gz", "disk.raw.xz"}
	for _, file := range formats {
		create(t, ns, importYAML(strings.ReplaceAll(strings.TrimPrefix(file, "disk."), ".", "-"), base+"/"+file, claimSize, ""))
	}
	for _, file := range formats {
		name := strings.ReplaceAll(strings.TrimPrefix(file, "disk."), ".", "-")
		waitFor(t, ns, name, "condition=Ready", 3*time.Minute)
		assertImported(t, ns, name, imgs.raw)

		dv := getDV(t, ns, name)
		assert.Equal(t, dv.Status.Phase, v1beta1.Succeeded)
		assert.Equal(t, dv.Status.Progress, v1beta1.DataVolumeProgress("100.0%"))
		assert.Equal(t, dv.Status.ClaimName, name)
		assert.Equal(t, conditionOf(dv, v1beta1.DataVolumeBound).Reason, "Bound")
		assert.Equal(t, conditionOf(dv, v1beta1.DataVolumeRunning).Reason, "Completed")
		events := eventsOf(t, ns, name)
		for _, want := range []string{`Normal\s+ImportScheduled\s+Import into ` + name + ` scheduled`, `Normal\s+Bound\s+PVC ` + name + ` Bound`,
			`Normal\s+ImportSucceeded\s+Successfully imported into PVC ` + name} {
			assert.Assert(t, is.Regexp(want, events))
		}
		annotations := kubectl(t, "get", "pvc", name, "-n", ns, "-o", "jsonpath={.metadata.annotations}")
		assert.Assert(t, is.Contains(annotations, `"cdi.kubevirt.io/storage.pod.phase":"Succeeded"`))
		assert.Assert(t, is.Contains(annotations, `"cdi.kubevirt.io/storage.contentType":"kubevirt"`))
	}
	// The Jobs' work is done: none is left, and so no pod.
	eventually(t, time.Minute, func() error {
		if out := kubectl(t, "get", "jobs,pods", "-n", ns, "-o", "name"); out != "" {
			return errorf("left behind: %s", out)
		}
		return nil
	})
	table := kubectl(t, "get", "dv", "-n", ns)
	assert.Assert(t, is.Regexp(`(?m)^qcow2\s+Succeeded\s+100\.0%\s+0\s`, table))
}

func TestImportArchiveExtractsIntoTheVolume(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, 1<<20)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "archive")
	create(t, ns, strings.Replace(importYAML("archive", base+"/disk.tar", claimSize, ""),
		"spec:\n  source:", "spec:\n  contentType: archive\n  source:", 1))
	waitFor(t, ns, "archive", "condition=Ready", 2*time.Minute)
	dir := volumePath(t, ns, "archive")
	motd, err := os.ReadFile(filepath.Join(dir, "etc", "motd"))
	assert.NilError(t, err)
	assert.Equal(t, string(motd), "hello from the archive\n")
	_, err = os.Stat(filepath.Join(dir, "disk.img"))
	assert.Assert(t, os.IsNotExist(err), "an archive is extracted, not written as a disk image")
}

func TestImportOverHTTPSWithCertConfigMapAndBasicAuth(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, diskSize)
	srv := serveFilesTLS(t, imgs.dir)
	ns := restrictedNamespace(t, "https")
	kubectl(t, "create", "configmap", "server-ca", "-n", ns, "--from-literal=my-ca.pem="+srv.caPEM)
	kubectl(t, "create", "secret", "generic", "creds", "-n", ns,
		"--from-literal=accessKeyId="+srv.user, "--from-literal=secretKey="+srv.password)
	create(t, ns, importYAML("secure", srv.base+"/disk.qcow2", claimSize, "      certConfigMap: server-ca\n      secretRef: creds\n"))
	waitFor(t, ns, "secure", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "secure", imgs.raw)
	// The password is nowhere a user or operator reads.
	seen := kubectl(t, "get", "dv,pvc,events", "-n", ns, "-o", "yaml") +
		kubectl(t, "logs", "-n", "datavolume-system", "-l", "app.kubernetes.io/name=datavolume-controller", "--tail=-1")
	assert.Assert(t, !strings.Contains(seen, srv.password), "the password leaked")
}

func TestImportFromARegistry(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, diskSize)
	url := pushDisk(t, registry(t), "disks/test:1", filepath.Join(imgs.dir, "disk.qcow2"))
	ns := restrictedNamespace(t, "registry")
	create(t, ns, `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: from-registry
spec:
  source:
    registry:
      url: `+url+`
  pvc:
    accessModes: [ReadWriteOnce]
    resources:
      requests:
        storage: `+claimSize+`
`)
	waitFor(t, ns, "from-registry", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "from-registry", imgs.raw)
	// The scratch space went with the Job.
	eventually(t, time.Minute, func() error {
		if out := strings.TrimSpace(kubectl(t, "get", "pvc", "-n", ns, "-o", "name")); out != "persistentvolumeclaim/from-registry" {
			return errorf("claims: %s", out)
		}
		return nil
	})
}

func TestBlankDataVolume(t *testing.T) {
	t.Parallel()
	ns := restrictedNamespace(t, "blank")
	create(t, ns, `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: empty
spec:
  source:
    blank: {}
  pvc:
    accessModes: [ReadWriteOnce]
    resources:
      requests:
        storage: `+claimSize+`
`)
	waitFor(t, ns, "empty", "condition=Ready", 2*time.Minute)
	file := filepath.Join(volumePath(t, ns, "empty"), "disk.img")
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(file, &st))
	assert.Equal(t, st.Size, int64(usableSize))
	assert.Assert(t, st.Blocks*512 < 1<<20, "a blank disk is sparse: %d bytes allocated", st.Blocks*512)
	assert.Equal(t, uint32(st.Uid), uint32(107), "the disk belongs to the qemu user")
}

func TestCloneWithinANamespace(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "clone")
	create(t, ns, importYAML("source", base+"/disk.raw.gz", claimSize, ""))
	// The clone waits for its source DataVolume to be filled, by itself.
	create(t, ns, cloneYAML("copy", ns, ns, "source", claimSize))
	waitFor(t, ns, "source", "condition=Ready", 3*time.Minute)
	waitFor(t, ns, "copy", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "copy", imgs.raw)
	events := eventsOf(t, ns, "copy")
	assert.Assert(t, is.Regexp(fmt.Sprintf(`Normal\s+CloneSucceeded\s+Successfully cloned from %s/source into %s/copy`, ns, ns), events))
}

func TestImportIntoTheSeedBlockVolume(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "block")
	device, err := cluster.AddBlockVolume(testContext(t), ns+"-block", "64Mi")
	assert.NilError(t, err)
	t.Cleanup(func() { _, _ = cluster.Kubectl(context.Background(), "", "delete", "pv", ns+"-block", "--wait=false") })
	// Old data on the device must not show through.
	assert.NilError(t, os.WriteFile(device, bytes.Repeat([]byte{0xa5}, 64<<20), 0))
	create(t, ns, strings.Replace(importYAML("disk", base+"/disk.qcow2", "64Mi", ""),
		"  pvc:\n", "  pvc:\n    volumeMode: Block\n", 1))
	waitFor(t, ns, "disk", "condition=Ready", 3*time.Minute)
	assert.Equal(t, kubectl(t, "get", "pvc", "disk", "-n", ns, "-o", "jsonpath={.spec.volumeName}"), ns+"-block")
	got, size := sha256Of(t, device, 64<<20)
	assert.Equal(t, size, int64(64<<20))
	assert.Equal(t, got, sha256Padded(t, imgs.raw, 64<<20))
}

func TestProgressIsShownWhileImporting(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, throttled(1<<20))
	ns := restrictedNamespace(t, "progress")
	create(t, ns, importYAML("slow", base+"/disk.raw", claimSize, ""))
	var seen []string
	eventually(t, 2*time.Minute, func() error {
		row := kubectl(t, "get", "dv", "slow", "-n", ns, "--no-headers")
		fields := strings.Fields(row)
		if len(fields) >= 3 && fields[1] == "ImportInProgress" && strings.HasSuffix(fields[2], "%") {
			pct, err := strconv.ParseFloat(strings.TrimSuffix(fields[2], "%"), 64)
			if err == nil && pct > 0 && pct < 100 {
				seen = append(seen, fields[2])
				return nil
			}
		}
		return errorf("no progress yet: %s", row)
	})
	t.Logf("progress seen: %v", seen)
	waitFor(t, ns, "slow", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "slow", imgs.raw)
}

func TestChecksumMismatchFailsWithoutRetries(t *testing.T) {
	t.Parallel()
	imgs := makeImages(t, 1<<20)
	base := serveFiles(t, imgs.dir, nil)
	ns := restrictedNamespace(t, "checksum")
	create(t, ns, importYAML("bad-sum", base+"/disk.raw", claimSize, "      checksum: sha256:"+strings.Repeat("0", 64)+"\n"))
	waitFor(t, ns, "bad-sum", "jsonpath={.status.phase}=Failed", 2*time.Minute)
	dv := getDV(t, ns, "bad-sum")
	assert.Equal(t, dv.Status.RestartCount, int32(0), "a checksum mismatch is not retried")
	running := conditionOf(dv, v1beta1.DataVolumeRunning)
	assert.Assert(t, is.Contains(strings.ToLower(running.Message), "checksum"))
	assert.Assert(t, is.Contains(eventsOf(t, ns, "bad-sum"), "ImportFailed"))
	// The failed Job stays for kubectl logs.
	assert.Assert(t, is.Contains(kubectl(t, "get", "jobs", "-n", ns, "-o", "name"), "job.batch/importer-bad-sum"))
}

func TestImageLargerThanTheClaimFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, err := exec.Command("qemu-img", "create", "-f", "qcow2", filepath.Join(dir, "big.qcow2"), "1G").CombinedOutput()
	assert.NilError(t, err, string(out))
	base := serveFiles(t, dir, nil)
	ns := restrictedNamespace(t, "toolarge")
	create(t, ns, importYAML("big", base+"/big.qcow2", claimSize, ""))
	waitFor(t, ns, "big", "jsonpath={.status.phase}=Failed", 2*time.Minute)
	msg := conditionOf(getDV(t, ns, "big"), v1beta1.DataVolumeRunning).Message
	assert.Assert(t, strings.Contains(msg, "1Gi") || strings.Contains(msg, "1073741824"), "the image's size: %s", msg)
	assert.Assert(t, strings.Contains(msg, "30Mi") || strings.Contains(msg, strconv.Itoa(usableSize)), "the volume's size: %s", msg)
}

func TestNotFoundIsReported(t *testing.T) {
	t.Parallel()
	base := serveFiles(t, t.TempDir(), nil)
	ns := restrictedNamespace(t, "notfound")
	create(t, ns, importYAML("missing", base+"/nothing-here.qcow2?token=SECRET", claimSize, ""))
	eventually(t, 2*time.Minute, func() error {
		dv := getDV(t, ns, "missing")
		if msg := conditionOf(dv, v1beta1.DataVolumeRunning).Message; !strings.Contains(msg, "404") {
			return errorf("running condition: %q", msg)
		}
		return nil
	})
	dv := getDV(t, ns, "missing")
	msg := conditionOf(dv, v1beta1.DataVolumeRunning).Message
	assert.Assert(t, is.Contains(msg, cluster.HostAddressForPods().String()), "names the host")
	assert.Assert(t, !strings.Contains(msg, "SECRET"), "never the query string: %s", msg)
	assert.Assert(t, dv.Status.Phase != v1beta1.Succeeded)
	assert.Assert(t, is.Contains(eventsOf(t, ns, "missing"), "404"))
}

// importInProgress creates, in a new namespace, a DataVolume named name
// importing the test disk from a server sending bytesPerSecond, and returns
// once the import runs: the namespace and the images, for the reference.
func importInProgress(t *testing.T, prefix, name string, bytesPerSecond int) (string, images) {
	t.Helper()
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, throttled(bytesPerSecond))
	ns := restrictedNamespace(t, prefix)
	create(t, ns, importYAML(name, base+"/disk.raw", claimSize, ""))
	waitFor(t, ns, name, "jsonpath={.status.phase}=ImportInProgress", 2*time.Minute)
	return ns, imgs
}

func TestDeletedMidImportLeavesNothing(t *testing.T) {
	t.Parallel()
	ns, _ := importInProgress(t, "deleted", "doomed", 512<<10)
	kubectl(t, "delete", "dv", "doomed", "-n", ns)
	eventually(t, 2*time.Minute, func() error {
		if out := kubectl(t, "get", "jobs,pods,pvc", "-n", ns, "-o", "name"); out != "" {
			return errorf("left behind: %s", out)
		}
		return nil
	})
}

// clonerPID finds the cloner process of a DataVolume on this host.
func clonerPID(t *testing.T, uid string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	assert.NilError(t, err)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte("datavolume-cloner")) && bytes.Contains(cmdline, []byte(uid)) {
			return pid
		}
	}
	return 0
}

func TestClonerKilledMidCopyIsRetried(t *testing.T) {
	t.Parallel()
	ns, imgs := importInProgress(t, "killed", "killed", 2<<20)
	uid := getDV(t, ns, "killed").UID
	var pid int
	eventually(t, 30*time.Second, func() error {
		if pid = clonerPID(t, string(uid)); pid == 0 {
			return errorf("no cloner process for %s", uid)
		}
		return nil
	})
	assert.NilError(t, syscall.Kill(pid, syscall.SIGKILL))
	waitFor(t, ns, "killed", "condition=Ready", 3*time.Minute)
	dv := getDV(t, ns, "killed")
	assert.Equal(t, dv.Status.RestartCount, int32(1))
	assertImported(t, ns, "killed", imgs.raw)
}

func TestLeaderKilledMidImportTheOtherReplicaFinishes(t *testing.T) {
	ns, imgs := importInProgress(t, "leader", "handover", 2<<20)
	leader := kubectl(t, "get", "lease", "datavolume-controller", "-n", "datavolume-system", "-o", "jsonpath={.spec.holderIdentity}")
	assert.Assert(t, leader != "")
	kubectl(t, "delete", "pod", leader, "-n", "datavolume-system", "--grace-period=0", "--force")
	waitFor(t, ns, "handover", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "handover", imgs.raw)
	now := kubectl(t, "get", "lease", "datavolume-controller", "-n", "datavolume-system", "-o", "jsonpath={.spec.holderIdentity}")
	assert.Assert(t, now != leader, "another replica leads")
	_, err := cluster.Kubectl(testContext(t), "", "rollout", "status", "-n", "datavolume-system", "deployment/datavolume-controller", "--timeout=120s")
	assert.NilError(t, err)
}

func TestAPIServerRestartedMidImport(t *testing.T) {
	ns, imgs := importInProgress(t, "restart", "survivor", 2<<20)
	assert.NilError(t, cluster.DeleteAPIServerPod(testContext(t)))
	waitFor(t, ns, "survivor", "condition=Ready", 3*time.Minute)
	assertImported(t, ns, "survivor", imgs.raw)
}

func TestUploadDataVolumeGetsItsServer(t *testing.T) {
	t.Parallel()
	ns := restrictedNamespace(t, "upload")
	create(t, ns, `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: upload-target
spec:
  source:
    upload: {}
  pvc:
    accessModes: [ReadWriteOnce]
    resources:
      requests:
        storage: `+claimSize+`
`)
	waitFor(t, ns, "upload-target", "jsonpath={.status.phase}=UploadReady", 2*time.Minute)
	assert.Equal(t, kubectl(t, "get", "service", "upload-upload-target", "-n", ns, "-o", "jsonpath={.spec.ports[0].port}"), "443")
	eventually(t, time.Minute, func() error {
		if eps := kubectl(t, "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=upload-upload-target",
			"-o", "jsonpath={.items[*].endpoints[*].addresses[*]}"); eps == "" {
			return errorf("the Service has no endpoint yet")
		}
		return nil
	})
	assert.Assert(t, is.Contains(eventsOf(t, ns, "upload-target"), "UploadReady"))
}
