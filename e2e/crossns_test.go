//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// seedCloneFiles are the seed's cross-namespace clone manifests, with its
// namespaces and ClusterRole renamed for one test (tests run side by side,
// and the seed's own names belong to TestCloneSeedRBAC) and the claim sized
// in MiBs.
func seedCloneFiles(t *testing.T, src, dst string) (clusterRole, roleBinding, dataVolume string) {
	t.Helper()
	role := "datavolume-cloner-" + dst
	rename := strings.NewReplacer(
		"source-namespace", src,
		"destination-namespace", dst,
		"name: datavolume-cloner", "name: "+role,
		"storage: 2Gi", "storage: "+claimSize,
	)
	read := func(name string) string {
		data, err := os.ReadFile(repoFile(t, filepath.Join("artifacts/examples", name)))
		assert.NilError(t, err)
		return rename.Replace(string(data))
	}
	t.Cleanup(func() { kubectl(t, "delete", "clusterrole", role, "--ignore-not-found") })
	return read("datavolume-cloner.yaml"), read("allow-clone-to-user.yaml"), read("cloner-datavolume.yaml")
}

// seedClone is a cross-namespace clone set up as the seed says: two
// restricted namespaces, the seed's ClusterRole and RoleBinding (renamed for
// the test) letting the destination's ServiceAccount default clone from
// the source namespace, and the seed's DataVolume to create as it.
type seedClone struct {
	src, dst                string
	sa                      identity
	roleBinding, dataVolume string
}

func newSeedClone(t *testing.T, prefix string) seedClone {
	t.Helper()
	s := seedClone{src: restrictedNamespace(t, prefix+"src"), dst: restrictedNamespace(t, prefix+"dst")}
	clusterRole, roleBinding, dataVolume := seedCloneFiles(t, s.src, s.dst)
	s.roleBinding, s.dataVolume = roleBinding, dataVolume
	out, err := kubectlIn(t, clusterRole+"\n---\n"+roleBinding, "create", "-f", "-")
	assert.NilError(t, err, out)
	s.sa = impersonated("system:serviceaccount:" + s.dst + ":default")
	allowEdit(t, s.sa, s.dst)
	eventually(t, 30*time.Second, func() error {
		if !canCloneBySource(t, s.sa, s.src, "my-favorite-vm-disk") {
			return errorf("RBAC does not allow the clone yet")
		}
		return nil
	})
	return s
}

// sourceWithDisk fills the seed's source claim, my-favorite-vm-disk, in src
// by an import, and returns the image it holds.
func sourceWithDisk(t *testing.T, src string) images {
	t.Helper()
	imgs := makeImages(t, diskSize)
	base := serveFiles(t, imgs.dir, nil)
	create(t, src, importYAML("my-favorite-vm-disk", base+"/disk.raw.xz", claimSize, ""))
	waitFor(t, src, "my-favorite-vm-disk", "condition=Ready", 3*time.Minute)
	return imgs
}

// assertNothingLeftIn checks the source namespace holds only the source:
// no temporary claim, no Job, no pod of ours.
func assertNothingLeftIn(t *testing.T, src string) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		left := kubectl(t, "get", "pvc,job,pod", "-n", src, "-l", "app.kubernetes.io/managed-by=datavolume-controller", "-o", "name")
		if left != "" {
			return errorf("left in %s: %s", src, left)
		}
		return nil
	})
}

// waitForReason waits until the DataVolume's Running condition has reason.
func waitForReason(t *testing.T, ns, name, reason string) {
	t.Helper()
	eventually(t, 2*time.Minute, func() error {
		if got := conditionOf(getDV(t, ns, name), "Running"); got.Reason != reason {
			return errorf("Running is %q (%s), not %q yet\n%s", got.Reason, got.Message, reason, diagnose(ns))
		}
		return nil
	})
}

// The seed's §6.10.1, for real: the ServiceAccount default of the
// destination namespace, allowed by the seed's RoleBinding, clones a VM
// disk across namespaces; the bytes arrive, and nothing stays behind.
func TestSeedCrossNamespaceCloneMovesTheBytes(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "x")
	src, dst, sa := s.src, s.dst, s.sa
	imgs := sourceWithDisk(t, src)
	out, err := sa.run(t, s.dataVolume, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)

	// The grant names who asked and the very claim cloned.
	grant := assertGrantVerifies(t, "cloner-datavolume", dst, src, "my-favorite-vm-disk")
	assert.Check(t, is.Equal(grant.Requester.GetName(), sa.name))
	assert.Check(t, is.Contains(grant.Requester.GetGroups(), "system:serviceaccounts:"+dst))
	assert.Check(t, is.Equal(string(grant.SourceUID), kubectl(t, "get", "pvc", "my-favorite-vm-disk", "-n", src, "-o", "jsonpath={.metadata.uid}")))
	waitFor(t, dst, "cloner-datavolume", "condition=Ready", 3*time.Minute)
	assertImported(t, dst, "cloner-datavolume", imgs.raw)
	// The source is untouched.
	assertImported(t, src, "my-favorite-vm-disk", imgs.raw)
	events := eventsOf(t, dst, "cloner-datavolume")
	assert.Check(t, is.Regexp(fmt.Sprintf(`Normal\s+CloneSucceeded\s+Successfully cloned from %s/my-favorite-vm-disk into %s/cloner-datavolume`, src, dst), events))
	dv := getDV(t, dst, "cloner-datavolume")
	assert.Check(t, is.Len(dv.Finalizers, 0))
	assert.Check(t, is.Equal(string(dv.Status.Progress), "100.0%"))
	// The target claim is controlled by the DataVolume and has the volume
	// the copy was written to, with its reclaim policy back.
	pv := kubectl(t, "get", "pvc", "cloner-datavolume", "-n", dst, "-o", "jsonpath={.spec.volumeName}")
	assert.Check(t, is.Equal(kubectl(t, "get", "pv", pv, "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}"), "Delete"))
	assert.Check(t, is.Equal(kubectl(t, "get", "pvc", "cloner-datavolume", "-n", dst, "-o", "jsonpath={.metadata.ownerReferences[0].kind}"), "DataVolume"))
	assertNothingLeftIn(t, src)

	// Deleting the DataVolume deletes its claim and, with it, the volume.
	kubectl(t, "delete", "dv", "cloner-datavolume", "-n", dst, "--wait=true", "--timeout=60s")
	eventually(t, 2*time.Minute, func() error {
		if out, err := cluster.Kubectl(testContext(t), "", "get", "pv", pv, "-o", "name"); err == nil && out != "" {
			return errorf("volume %s still there", pv)
		}
		return nil
	})
}

// Revocation is honoured before data moves: the clone waits for its busy
// source, the RoleBinding goes, the source is freed; no data moves and the
// DataVolume says which permission is missing. The RoleBinding back, the
// clone resumes by itself.
func TestRevokedCloneWaitsAndResumes(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "r")
	src, dst, sa := s.src, s.dst, s.sa
	imgs := sourceWithDisk(t, src)

	// A VM stand-in writes to the source.
	out, err := kubectlIn(t, `apiVersion: v1
kind: Pod
metadata:
  name: vm
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 107
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: vm
      image: `+clonerImage(t)+`
      imagePullPolicy: Never
      command: ["sleep", "3600"]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
      volumeMounts:
        - name: disk
          mountPath: /disk
  volumes:
    - name: disk
      persistentVolumeClaim:
        claimName: my-favorite-vm-disk
`, "create", "-n", src, "-f", "-")
	assert.NilError(t, err, out)
	kubectl(t, "wait", "-n", src, "pod/vm", "--for=condition=Ready", "--timeout=2m")

	out, err = sa.run(t, s.dataVolume, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)
	waitForReason(t, dst, "cloner-datavolume", "CloneSourceInUse")

	kubectl(t, "delete", "rolebinding", "allow-clone-to-user", "-n", src)
	kubectl(t, "delete", "pod", "vm", "-n", src, "--wait=true")
	waitForReason(t, dst, "cloner-datavolume", "ClonePermissionMissing")
	dv := getDV(t, dst, "cloner-datavolume")
	assert.Check(t, is.Equal(string(dv.Status.Phase), "CloneScheduled"))
	running := conditionOf(dv, "Running")
	assert.Check(t, is.Contains(running.Message, `"system:serviceaccount:`+dst+`:default" may no longer clone `+src+`/my-favorite-vm-disk: missing permission`), running.Message)
	assert.Check(t, is.Contains(eventsOf(t, dst, "cloner-datavolume"), "ClonePermissionMissing"))
	// No data moved: no Job, no temporary claim, no target claim.
	assert.Check(t, is.Equal(kubectl(t, "get", "job,pvc", "-n", src, "-l", "app.kubernetes.io/managed-by=datavolume-controller", "-o", "name"), ""))
	assert.Check(t, is.Equal(kubectl(t, "get", "pvc", "-n", dst, "-o", "name"), ""))

	out, err = kubectlIn(t, s.roleBinding, "create", "-f", "-")
	assert.NilError(t, err, out)
	waitFor(t, dst, "cloner-datavolume", "condition=Ready", 3*time.Minute)
	assertImported(t, dst, "cloner-datavolume", imgs.raw)
	assertNothingLeftIn(t, src)
}

// A DataVolume deleted mid-clone (its temporary claim and Job made, its
// pod starting) leaves nothing in either namespace.
func TestCrossNamespaceCloneDeletedMidCopyLeavesNothing(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "d")
	src, dst, sa := s.src, s.dst, s.sa
	sourceWithDisk(t, src)
	out, err := sa.run(t, s.dataVolume, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)
	eventually(t, 2*time.Minute, func() error {
		if kubectl(t, "get", "job", "-n", src, "-l", "app.kubernetes.io/managed-by=datavolume-controller", "-o", "name") == "" {
			return errorf("no clone Job in %s yet", src)
		}
		return nil
	})
	uid := string(getDV(t, dst, "cloner-datavolume").UID)
	kubectl(t, "delete", "dv", "cloner-datavolume", "-n", dst, "--wait=true", "--timeout=90s")
	assertNothingLeftIn(t, src)
	eventually(t, time.Minute, func() error {
		if left := kubectl(t, "get", "pvc,job", "-n", dst, "-o", "name"); left != "" {
			return errorf("left in %s: %s", dst, left)
		}
		return nil
	})
	// No volume of the clone stays behind either.
	eventually(t, time.Minute, func() error {
		if left := kubectl(t, "get", "pv", "-l", "datavolume.cdi.kubevirt.io/uid="+uid, "-o", "name"); left != "" {
			return errorf("volume left: %s", left)
		}
		return nil
	})
}

// The seed's §6.10.2 without KubeVirt: vm-dv-clone.yaml's template becomes
// a DataVolume controlled by the VM, cloned across namespaces for the VM's
// ServiceAccount (the seed's RoleBinding names it); deleting the VM deletes
// it and its claim. A DataVolume made on its own and used by a VM outlives
// the VM: the seed's other lifecycle.
func TestSeedVirtualMachineTemplateIsCloned(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "v")
	src, dst := s.src, s.dst
	imgs := sourceWithDisk(t, src)
	data, err := os.ReadFile(repoFile(t, "artifacts/examples/vm-dv-clone.yaml"))
	assert.NilError(t, err)
	vm := strings.NewReplacer(`namespace: "source-namespace"`, `namespace: "`+src+`"`, "storage: 2Gi", "storage: "+claimSize).Replace(string(data))
	out, err := kubectlIn(t, vm, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)

	eventually(t, time.Minute, func() error {
		if _, err := cluster.Kubectl(testContext(t), "", "get", "dv", "favorite-clone", "-n", dst); err != nil {
			return errorf("no DataVolume favorite-clone yet: %v", err)
		}
		return nil
	})
	waitFor(t, dst, "favorite-clone", "condition=Ready", 3*time.Minute)
	assertImported(t, dst, "favorite-clone", imgs.raw)
	dv := getDV(t, dst, "favorite-clone")
	vmUID := kubectl(t, "get", "vm", "vm-dv-clone", "-n", dst, "-o", "jsonpath={.metadata.uid}")
	assert.Check(t, is.Equal(dv.Labels["kubevirt.io/created-by"], vmUID))
	assert.Check(t, is.Len(dv.OwnerReferences, 1))
	assert.Check(t, is.Equal(dv.OwnerReferences[0].Kind, "VirtualMachine"))
	assert.Check(t, is.Equal(string(dv.OwnerReferences[0].UID), vmUID))
	vmEvents := kubectl(t, "get", "events", "-n", dst, "--field-selector", "involvedObject.kind=VirtualMachine,involvedObject.name=vm-dv-clone",
		"-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message", "--no-headers")
	assert.Check(t, is.Regexp(`Normal\s+SuccessfulDataVolumeCreate\s+Created DataVolume favorite-clone`, vmEvents))
	// The grant names the VM's ServiceAccount, not the controller.
	grant := assertGrantVerifies(t, "favorite-clone", dst, src, "my-favorite-vm-disk")
	assert.Check(t, is.Equal(grant.Requester.GetName(), "system:serviceaccount:"+dst+":default"), "the VM's ServiceAccount")
	assertNothingLeftIn(t, src)

	// A DataVolume of its own, used by a VM, outlives the VM.
	create(t, dst, cloneYAML("own-disk", dst, dst, "favorite-clone", claimSize))
	waitFor(t, dst, "own-disk", "condition=Ready", 3*time.Minute)
	out, err = kubectlIn(t, `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: uses-own-disk
spec:
  running: false
  template:
    spec:
      domain:
        devices:
          disks:
          - name: root
            disk: {bus: virtio}
      volumes:
      - name: root
        dataVolume:
          name: own-disk
`, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)
	kubectl(t, "delete", "vm", "uses-own-disk", "-n", dst, "--wait=true")

	// Deleting the template's VM deletes its DataVolume and claim.
	kubectl(t, "delete", "vm", "vm-dv-clone", "-n", dst, "--wait=true")
	eventually(t, 2*time.Minute, func() error {
		if left := strings.TrimSpace(kubectl(t, "get", "dv,pvc", "-n", dst, "-o", "name")); left != "datavolume.cdi.kubevirt.io/own-disk\npersistentvolumeclaim/own-disk" {
			return errorf("in %s: %q", dst, left)
		}
		return nil
	})
}

// The seed's block clone (6.10.4) across namespaces: the temporary claim
// binds the loop-device PV in the source namespace, the copy writes the
// device, and the PV is handed over to the target claim, with its own
// reclaim policy (Retain) back.
func TestSeedBlockCloneAcrossNamespaces(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "b")
	src, dst, sa := s.src, s.dst, s.sa
	imgs := sourceWithDisk(t, src)
	const size = 72 << 20 // no other test's Block claim fits it but its own
	device, err := cluster.AddBlockVolume(testContext(t), dst+"-block", "72Mi")
	assert.NilError(t, err)
	t.Cleanup(func() { _, _ = cluster.Kubectl(context.Background(), "", "delete", "pv", dst+"-block", "--wait=false") })
	// Old data on the device must not show through.
	assert.NilError(t, os.WriteFile(device, bytes.Repeat([]byte{0xa5}, size), 0))
	data, err := os.ReadFile(repoFile(t, "artifacts/examples/cloner-datavolume-block.yaml"))
	assert.NilError(t, err)
	dv := strings.NewReplacer(`"source-namespace"`, `"`+src+`"`, "storage: 2Gi", "storage: 72Mi").Replace(string(data))
	out, err := sa.run(t, dv, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)

	waitFor(t, dst, "cloner-datavolume", "condition=Ready", 3*time.Minute)
	assert.Equal(t, kubectl(t, "get", "pvc", "cloner-datavolume", "-n", dst, "-o", "jsonpath={.spec.volumeName}"), dst+"-block")
	got, n := sha256Of(t, device, size)
	assert.Equal(t, n, int64(size))
	assert.Equal(t, got, sha256Padded(t, imgs.raw, size), "the device holds the image, then zeros")
	assert.Check(t, is.Equal(kubectl(t, "get", "pv", dst+"-block", "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}"), "Retain"))
	assertNothingLeftIn(t, src)
}

// The controller ends its process after each step of a hand-over (a
// test-only crash point, one DataVolume per step): the other replica, or
// the same one restarted, carries on, and every clone still ends byte-exact
// with nothing left in the source namespace. Not parallel: the crashes
// would stall every other test's DataVolumes.
func TestControllerKilledAtEachHandOverStep(t *testing.T) {
	s := newSeedClone(t, "k")
	src, dst, sa := s.src, s.dst, s.sa
	imgs := sourceWithDisk(t, src)
	restartsBefore := controllerRestarts(t)
	steps := []string{"retained", "target-created", "released", "rebound", "restored"}
	for _, step := range steps {
		manifest := strings.Replace(s.dataVolume, "name: cloner-datavolume\n",
			"name: crash-"+step+"\n  annotations:\n    datavolume.cdi.kubevirt.io/test-crash-after: "+step+"\n", 1)
		out, err := sa.run(t, manifest, "create", "-n", dst, "-f", "-")
		assert.NilError(t, err, out)
	}
	for _, step := range steps {
		waitFor(t, dst, "crash-"+step, "condition=Ready", 5*time.Minute)
		assertImported(t, dst, "crash-"+step, imgs.raw)
		pv := kubectl(t, "get", "pvc", "crash-"+step, "-n", dst, "-o", "jsonpath={.spec.volumeName}")
		assert.Check(t, is.Equal(kubectl(t, "get", "pv", pv, "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}"), "Delete"), step)
	}
	assertNothingLeftIn(t, src)
	restarts := controllerRestarts(t) - restartsBefore
	t.Logf("controller restarts: %d", restarts)
	assert.Check(t, restarts >= len(steps), "the controller ended at every step: %d restarts", restarts)
}

// controllerRestarts sums the restarts of datavolume-controller's containers.
func controllerRestarts(t *testing.T) int {
	t.Helper()
	out := kubectl(t, "get", "pods", "-n", "datavolume-system", "-l", "app.kubernetes.io/name=datavolume-controller",
		"-o", "jsonpath={range .items[*]}{.status.containerStatuses[0].restartCount} {end}")
	total := 0
	for _, f := range strings.Fields(out) {
		n, err := strconv.Atoi(f)
		assert.NilError(t, err, out)
		total += n
	}
	return total
}

// The fallback: a source namespace whose quota refuses the temporary claim
// gets the mutual-TLS pair instead (clone-source there, clone-target here,
// a CA of the clone's own), and so does a DataVolume that asks for it; both
// byte-exact, and the certificates, the Service and the Jobs go after.
func TestCrossNamespaceCloneOverTheNetwork(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "n")
	src, dst, sa := s.src, s.dst, s.sa
	imgs := sourceWithDisk(t, src)
	// Asked for.
	asked := strings.Replace(s.dataVolume, "name: cloner-datavolume\n",
		"name: asked\n  annotations:\n    datavolume.cdi.kubevirt.io/clone-strategy: network\n", 1)
	out, err := sa.run(t, asked, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)
	waitFor(t, dst, "asked", "condition=Ready", 3*time.Minute)
	assertImported(t, dst, "asked", imgs.raw)
	assert.Check(t, is.Equal(kubectl(t, "get", "pvc", "asked", "-n", dst, "-o", "jsonpath={.metadata.annotations.datavolume\\.cdi\\.kubevirt\\.io/clone-path}"), "network"))

	// Forced by a quota: the source namespace has room for no other claim.
	out, err = kubectlIn(t, `apiVersion: v1
kind: ResourceQuota
metadata:
  name: no-more-claims
spec:
  hard:
    persistentvolumeclaims: "1"
`, "create", "-n", src, "-f", "-")
	assert.NilError(t, err, out)
	eventually(t, 30*time.Second, func() error {
		if used := kubectl(t, "get", "resourcequota", "no-more-claims", "-n", src, "-o", "jsonpath={.status.used.persistentvolumeclaims}"); used != "1" {
			return errorf("quota not counted yet: %q", used)
		}
		return nil
	})
	out, err = sa.run(t, s.dataVolume, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)
	waitFor(t, dst, "cloner-datavolume", "condition=Ready", 3*time.Minute)
	assertImported(t, dst, "cloner-datavolume", imgs.raw)
	assert.Check(t, is.Equal(kubectl(t, "get", "pvc", "cloner-datavolume", "-n", dst, "-o", "jsonpath={.metadata.annotations.datavolume\\.cdi\\.kubevirt\\.io/clone-path}"), "network"))

	assertNothingLeftIn(t, src)
	eventually(t, time.Minute, func() error {
		for _, ns := range []string{src, dst} {
			if left := kubectl(t, "get", "secret,service,job", "-n", ns, "-l", "app.kubernetes.io/managed-by=datavolume-controller", "-o", "name"); left != "" {
				return errorf("left in %s: %s", ns, left)
			}
		}
		return nil
	})
}
