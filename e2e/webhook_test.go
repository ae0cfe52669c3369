//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// The seed's names (6.10.1–6.10.3): the VM disk to clone, where it lives,
// and the namespace whose default service account may clone it.
const (
	sourceNamespace      = "source-namespace"
	sourceClaim          = "my-favorite-vm-disk"
	destinationNamespace = "destination-namespace"
)

// The webhooks as kube-apiserver names them in refusals and audit keys.
const (
	validateDataVolumes     = `admission webhook "datavolumes.validate.cdi.kubevirt.io" denied the request`
	validateVirtualMachines = `admission webhook "clone.cdi.kubevirt.io" denied the request`
)

// The seed's block DataVolume clones the VM disk into a Block volume, with
// the seed's local block PV on a real loop device available for it.
func TestWebhookAdmitsSeedBlockClone(t *testing.T) {
	seedSourceClaim(t)
	device := attachLoopDevice(t, 2<<30)
	manifest, err := os.ReadFile(repoFile(t, "artifacts/examples/local-block-pv10.yaml"))
	assert.NilError(t, err)
	pv := strings.ReplaceAll(string(manifest), "/dev/loop10", device)
	out, err := kubectlIn(t, pv, "create", "-f", "-")
	assert.NilError(t, err)
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "", "delete", "pv", "local-block-pv10", "--wait=false")
	})
	assert.Check(t, is.Contains(out, "persistentvolume/local-block-pv10 created"))
	var volume corev1.PersistentVolume
	getJSON(t, &volume, "pv", "local-block-pv10")
	assert.Equal(t, volume.Spec.Local.Path, device)
	assert.Equal(t, *volume.Spec.VolumeMode, corev1.PersistentVolumeBlock)

	ns := namespace(t, "block")
	stdout, stderr, err := kubectlWithWarnings(t, "", "create", "-n", ns, "-f", repoFile(t, "artifacts/examples/cloner-datavolume-block.yaml"))
	assert.NilError(t, err, stderr)
	assert.Check(t, is.Contains(stdout, "datavolume.cdi.kubevirt.io/cloner-datavolume created"))
	// The source exists and no pod uses it: nothing to warn about.
	assert.Check(t, is.Equal(stderr, ""))
	var dv v1beta1.DataVolume
	getJSON(t, &dv, "-n", ns, "dv", "cloner-datavolume")
	assert.Equal(t, *dv.Spec.PVC.VolumeMode, corev1.PersistentVolumeBlock)
}

func TestWebhookRefusesCloneSmallerThanSource(t *testing.T) {
	seedSourceClaim(t)
	ns := namespace(t, "smaller")
	const refusal = `spec.pvc.resources.requests.storage: Invalid value: "1Gi": must be at least the size of the source PersistentVolumeClaim "source-namespace/my-favorite-vm-disk" (2Gi)`
	_, stderr, err := kubectlWithWarnings(t, cloneYAML("too-small", ns, sourceNamespace, sourceClaim, "1Gi"), "create", "-f", "-")
	assert.Assert(t, err != nil, "a 1Gi clone of a 2Gi claim was admitted")
	assert.Check(t, is.Contains(stderr, `The DataVolume "too-small" is invalid: `+refusal))

	// kubectl prints a 422's causes only; the status names the webhook.
	size := resource.MustParse("1Gi")
	_, err = cdi(t, "").CdiV1beta1().DataVolumes(ns).Create(testContext(t), &v1beta1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "too-small"},
		Spec: v1beta1.DataVolumeSpec{
			Source: &v1beta1.DataVolumeSource{PVC: &v1beta1.DataVolumeSourcePVC{Namespace: sourceNamespace, Name: sourceClaim}},
			PVC: &corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			},
		},
	}, metav1.CreateOptions{})
	assert.Assert(t, apierrors.IsInvalid(err), "%v", err)
	status := err.(apierrors.APIStatus).Status()
	assert.Check(t, is.Contains(status.Message, validateDataVolumes))
	assert.Check(t, is.Contains(status.Message, refusal))
	assert.Equal(t, strings.TrimSpace(kubectl(t, "get", "dv", "-n", ns, "-o", "name")), "")
}

// An archive is a filesystem's files: never a Block volume, whether asked
// for directly or in a VirtualMachine's template (only the webhook sees those).
func TestWebhookRefusesArchiveIntoBlock(t *testing.T) {
	ns := namespace(t, "archive")
	archive := `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: archive-block
  namespace: ` + ns + `
spec:
  contentType: archive
  source:
    http:
      url: http://images.example/disk.tar
  pvc:
    accessModes: [ReadWriteOnce]
    volumeMode: Block
    resources:
      requests:
        storage: 1Gi
`
	_, err := kubectlIn(t, archive, "create", "-f", "-")
	assert.ErrorContains(t, err, "spec.pvc.volumeMode: Forbidden: contentType archive needs a Filesystem volume")
	assert.Equal(t, strings.TrimSpace(kubectl(t, "get", "dv", "-n", ns, "-o", "name")), "")

	vm := `apiVersion: kubevirt.io/v1alpha3
kind: VirtualMachine
metadata:
  name: archive-vm
  namespace: ` + ns + `
spec:
  running: false
  template:
    spec: {}
  dataVolumeTemplates:
  - metadata:
      name: archive-disk
    spec:
      contentType: archive
      source:
        http:
          url: http://images.example/disk.tar
      pvc:
        accessModes: [ReadWriteOnce]
        volumeMode: Block
        resources:
          requests:
            storage: 1Gi
`
	// The CRD takes any spec: the refusal can only be the webhook's.
	_, stderr, err := kubectlWithWarnings(t, vm, "create", "-f", "-")
	assert.Assert(t, err != nil, "a VM with an archive Block template was admitted")
	assert.Check(t, is.Contains(stderr, `The VirtualMachine "archive-vm" is invalid: `+
		"spec.dataVolumeTemplates[0].spec.pvc.volumeMode: Forbidden: contentType archive needs a Filesystem volume"))
	assert.Equal(t, strings.TrimSpace(kubectl(t, "get", "vm", "-n", ns, "-o", "name")), "")
}

// A clone of a claim that does not exist yet is stored (the controller
// waits for it), and kubectl shows the webhook's warning.
func TestWebhookWarnsOfMissingSource(t *testing.T) {
	seedSourceClaim(t)
	ns := namespace(t, "missing")
	stdout, stderr, err := kubectlWithWarnings(t, cloneYAML("waits", ns, sourceNamespace, "no-such-disk", "1Gi"), "create", "-f", "-")
	assert.NilError(t, err, stderr)
	assert.Check(t, is.Contains(stdout, "datavolume.cdi.kubevirt.io/waits created"))
	assert.Check(t, is.Equal(strings.TrimSpace(stderr),
		`Warning: spec.source.pvc: the source PersistentVolumeClaim "source-namespace/no-such-disk" does not exist yet; the clone waits until it does`))
	kubectl(t, "get", "dv", "waits", "-n", ns)
}

// spec.storage may leave a clone's size out; the mutating webhook fills in
// the source's.
func TestWebhookFillsCloneSizeFromSource(t *testing.T) {
	seedSourceClaim(t)
	ns := namespace(t, "sized")
	dv := `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: sized
  namespace: ` + ns + `
spec:
  source:
    pvc:
      namespace: ` + sourceNamespace + `
      name: ` + sourceClaim + `
  storage:
    accessModes: [ReadWriteOnce]
`
	_, err := kubectlIn(t, dv, "create", "-f", "-")
	assert.NilError(t, err)
	var created v1beta1.DataVolume
	getJSON(t, &created, "-n", ns, "dv", "sized")
	assert.Assert(t, created.Spec.Storage != nil)
	size := created.Spec.Storage.Resources.Requests[corev1.ResourceStorage]
	assert.Equal(t, size.String(), "2Gi")
}

// The seed's VM (6.10.3) in destination-namespace, whose default service
// account the seed's RoleBinding lets clone from source-namespace. The
// decision is in kube-apiserver's audit log under the webhook's name.
func TestVirtualMachineCloneAllowedBySeedRoleBinding(t *testing.T) {
	seedSourceClaim(t)
	seedClonePermission(t)
	var stdout string
	// RBAC reaches the authorizer's cache moments after the binding is made.
	eventually(t, 30*time.Second, func() error {
		out, stderr, err := kubectlWithWarnings(t, "", "create", "-n", destinationNamespace, "-f", repoFile(t, "artifacts/examples/vm-dv-clone.yaml"))
		if err != nil {
			return errorf("%v: %s", err, stderr)
		}
		stdout = out
		return nil
	})
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "", "delete", "vm", "vm-dv-clone", "-n", destinationNamespace, "--wait=false")
	})
	assert.Check(t, is.Contains(stdout, "virtualmachine.kubevirt.io/vm-dv-clone created"))

	annotations := cloneAuditAnnotations(t, destinationNamespace, "vm-dv-clone", 201)
	assert.Check(t, is.Contains(annotations["clone.cdi.kubevirt.io/reason"], `RoleBinding "allow-clone-to-user/source-namespace"`))
	delete(annotations, "clone.cdi.kubevirt.io/reason")
	assert.DeepEqual(t, annotations, map[string]string{
		"clone.cdi.kubevirt.io/decision":       "allow",
		"clone.cdi.kubevirt.io/serviceaccount": "destination-namespace/default",
		"clone.cdi.kubevirt.io/source":         "source-namespace/my-favorite-vm-disk",
		"clone.cdi.kubevirt.io/target":         "destination-namespace/favorite-clone",
	})
}

// The same VM where no RoleBinding lets the default service account clone:
// refused with 403, naming the template, and audited as denied.
func TestVirtualMachineCloneRefusedWithoutRoleBinding(t *testing.T) {
	seedSourceClaim(t)
	ns := namespace(t, "nobinding")
	_, stderr, err := kubectlWithWarnings(t, "", "create", "-n", ns, "-f", repoFile(t, "artifacts/examples/vm-dv-clone.yaml"))
	assert.Assert(t, err != nil, "a VM whose service account may not clone was admitted")
	assert.Check(t, is.Contains(stderr, validateVirtualMachines))
	assert.Check(t, is.Contains(stderr, `virtualmachines.kubevirt.io "vm-dv-clone" is forbidden`))
	assert.Check(t, is.Contains(stderr, "spec.dataVolumeTemplates[0].spec.source.pvc: Forbidden: service account "+ns+
		"/default may not clone the PersistentVolumeClaim source-namespace/my-favorite-vm-disk into namespace "+ns))
	assert.Equal(t, strings.TrimSpace(kubectl(t, "get", "vm", "-n", ns, "-o", "name")), "")

	annotations := cloneAuditAnnotations(t, ns, "vm-dv-clone", 403)
	assert.Check(t, annotations["clone.cdi.kubevirt.io/reason"] != "", "no reason in %v", annotations)
	delete(annotations, "clone.cdi.kubevirt.io/reason")

	// A template too small for the source, asked with --dry-run=server: the
	// refusal tells the requester nothing about the claim it may not clone,
	// not its size, mode, users or whether it exists.
	example, err := os.ReadFile(repoFile(t, "artifacts/examples/vm-dv-clone.yaml"))
	assert.NilError(t, err)
	small := strings.Replace(string(example), "storage: 2Gi", "storage: 1Gi", 1)
	assert.Assert(t, small != string(example))
	_, stderr, err = kubectlWithWarnings(t, small, "create", "--dry-run=server", "-n", ns, "-f", "-")
	assert.Assert(t, err != nil, "a VM whose service account may not clone was admitted")
	assert.Check(t, is.Contains(stderr, "may not clone"))
	for _, leak := range []string{"2Gi", "smaller", "Block", "Filesystem", "in use", "does not exist", "not found"} {
		assert.Check(t, !strings.Contains(stderr, leak), "the refusal tells %q about the source: %s", leak, stderr)
	}
	assert.DeepEqual(t, annotations, map[string]string{
		"clone.cdi.kubevirt.io/decision":       "deny",
		"clone.cdi.kubevirt.io/serviceaccount": ns + "/default",
		"clone.cdi.kubevirt.io/source":         "source-namespace/my-favorite-vm-disk",
		"clone.cdi.kubevirt.io/target":         ns + "/favorite-clone",
	})
}

// A VM whose template mounts another service account runs as that account,
// so that account's permission decides, not default's.
func TestVirtualMachineCloneJudgedByItsServiceAccount(t *testing.T) {
	seedSourceClaim(t)
	seedClonePermission(t)

	// destination-namespace's default may clone; its vm-nobody may not.
	nobody := strings.Replace(withServiceAccount(t, seedVirtualMachine(t), "vm-nobody"), "name: vm-dv-clone\nspec:", "name: vm-nobody\nspec:", 1)
	_, stderr, err := kubectlWithWarnings(t, nobody, "create", "-n", destinationNamespace, "-f", "-")
	assert.Assert(t, err != nil, "a VM running as an account without permission was admitted")
	assert.Check(t, is.Contains(stderr, validateVirtualMachines))
	assert.Check(t, is.Contains(stderr, "service account destination-namespace/vm-nobody may not clone the PersistentVolumeClaim source-namespace/my-favorite-vm-disk"))

	// In a namespace where only vm-runner may clone, the plain VM is refused
	// and the one running as vm-runner admitted.
	ns := namespace(t, "runner")
	kubectl(t, "create", "serviceaccount", "vm-runner", "-n", ns)
	binding := "allow-clone-to-" + ns
	kubectl(t, "create", "rolebinding", binding, "-n", sourceNamespace, "--clusterrole=datavolume-cloner", "--serviceaccount="+ns+":vm-runner")
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "", "delete", "rolebinding", binding, "-n", sourceNamespace)
	})
	_, stderr, err = kubectlWithWarnings(t, seedVirtualMachine(t), "create", "-n", ns, "-f", "-")
	assert.Assert(t, err != nil, "a VM running as default was admitted")
	assert.Check(t, is.Contains(stderr, "service account "+ns+"/default may not clone"))

	runner := withServiceAccount(t, seedVirtualMachine(t), "vm-runner")
	eventually(t, 30*time.Second, func() error {
		_, stderr, err := kubectlWithWarnings(t, runner, "create", "-n", ns, "-f", "-")
		if err != nil {
			return errorf("%v: %s", err, stderr)
		}
		return nil
	})
	annotations := cloneAuditAnnotations(t, ns, "vm-dv-clone", 201)
	assert.Check(t, is.Equal(annotations["clone.cdi.kubevirt.io/decision"], "allow"))
	assert.Check(t, is.Equal(annotations["clone.cdi.kubevirt.io/serviceaccount"], ns+"/vm-runner"))
}

// The webhooks are called only where they have something to check (their
// matchConditions). With the webhook down, a DataVolume that clones
// nothing, a VirtualMachine without dataVolumeTemplates and an update that
// leaves a VM's templates alone are still admitted; a clone and a changed
// template are refused, since the webhooks fail closed.
func TestWebhookDownBlocksOnlyWhatItChecks(t *testing.T) {
	seedSourceClaim(t)
	ns := namespace(t, "hookdown")
	vm := func(name, templates string) string {
		return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ` + name + `
  namespace: ` + ns + `
spec:
  running: false` + templates + `
  template:
    spec:
      domain:
        devices: {}
`
	}
	template := `
  dataVolumeTemplates:
  - metadata:
      name: imported
    spec:
      source:
        http:
          url: http://images.example/disk.qcow2
      pvc:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi`
	out, err := kubectlIn(t, vm("with-template", template), "create", "-f", "-")
	assert.NilError(t, err, out)

	stopWebhook(t)

	blank := `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: blank
  namespace: ` + ns + `
spec:
  source:
    blank: {}
  pvc:
    accessModes: [ReadWriteOnce]
    resources:
      requests:
        storage: 1Gi
`
	out, err = kubectlIn(t, blank, "create", "-f", "-")
	assert.Check(t, err, out)
	out, err = kubectlIn(t, vm("no-templates", ""), "create", "-f", "-")
	assert.Check(t, err, out)
	out, err = kubectlIn(t, "", "label", "vm", "with-template", "-n", ns, "touched=yes")
	assert.Check(t, err, out)

	// A clone with its size is only validated; one whose spec.storage leaves
	// the size out is first sized by the mutating webhook.
	_, stderr, err := kubectlWithWarnings(t, cloneYAML("clone", ns, sourceNamespace, sourceClaim, "2Gi"), "create", "-f", "-")
	assert.Check(t, err != nil, "a clone was admitted with the webhook down")
	assert.Check(t, is.Contains(stderr, `failed calling webhook "datavolumes.validate.cdi.kubevirt.io"`))
	unsized := `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: unsized
  namespace: ` + ns + `
spec:
  source:
    pvc:
      namespace: ` + sourceNamespace + `
      name: ` + sourceClaim + `
  storage:
    accessModes: [ReadWriteOnce]
`
	_, stderr, err = kubectlWithWarnings(t, unsized, "create", "-f", "-")
	assert.Check(t, err != nil, "an unsized clone was admitted with the webhook down")
	assert.Check(t, is.Contains(stderr, `failed calling webhook "datavolumes.mutate.cdi.kubevirt.io"`))
	_, stderr, err = kubectlWithWarnings(t, "", "patch", "vm", "with-template", "-n", ns, "--type=json",
		"-p", `[{"op":"replace","path":"/spec/dataVolumeTemplates/0/spec/pvc/resources/requests/storage","value":"2Gi"}]`)
	assert.Check(t, err != nil, "a changed template was admitted with the webhook down")
	assert.Check(t, is.Contains(stderr, `failed calling webhook "clone.cdi.kubevirt.io"`))
	_, stderr, err = kubectlWithWarnings(t, vm("new-template", strings.ReplaceAll(template, "imported", "other")), "create", "-f", "-")
	assert.Check(t, err != nil, "a VM with a template was admitted with the webhook down")
	assert.Check(t, is.Contains(stderr, `failed calling webhook "clone.cdi.kubevirt.io"`))
}

// stopWebhook scales the webhook to no pods and waits until they are gone;
// at the end of the test it scales it back and waits until it answers.
func stopWebhook(t *testing.T) {
	t.Helper()
	const deployment, pods = "deployment/datavolume-webhook", "app.kubernetes.io/name=datavolume-webhook"
	t.Cleanup(func() {
		ctx := context.Background()
		for _, args := range [][]string{
			{"scale", deployment, "-n", "datavolume-system", "--replicas=1"},
			{"rollout", "status", deployment, "-n", "datavolume-system", "--timeout=120s"},
		} {
			if out, err := cluster.Kubectl(ctx, "", args...); err != nil {
				t.Fatalf("restarting the webhook: kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		waitForWebhookCache(t, 60*time.Second)
	})
	kubectl(t, "scale", deployment, "-n", "datavolume-system", "--replicas=0")
	kubectl(t, "wait", "--for=delete", "pod", "-l", pods, "-n", "datavolume-system", "--timeout=60s")
}

// The seed's import VM (6.10.3.4) needs no clone permission.
func TestVirtualMachineSeedImportIsAdmitted(t *testing.T) {
	ns := namespace(t, "import")
	stdout, stderr, err := kubectlWithWarnings(t, "", "create", "-n", ns, "-f", repoFile(t, "artifacts/examples/example-dv-vm.yaml"))
	assert.NilError(t, err, stderr)
	assert.Check(t, is.Contains(stdout, "virtualmachine.kubevirt.io/example-vm created"))
	assert.Check(t, is.Equal(stderr, ""))
}

// seedSourceClaim creates the seed's source namespace and a 2Gi claim in
// it, once for all tests (the names are fixed and the cluster is discarded
// at the end), and waits until the webhook's cache holds the claim.
func seedSourceClaim(t *testing.T) {
	t.Helper()
	_, err := kubectlIn(t, `apiVersion: v1
kind: Namespace
metadata:
  name: `+sourceNamespace+`
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: `+sourceClaim+`
  namespace: `+sourceNamespace+`
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 2Gi
`, "apply", "-f", "-")
	assert.NilError(t, err)
	waitForWebhookCache(t, 30*time.Second)
}

// waitForWebhookCache waits until a clone of the seed's source claim is
// admitted without the warning that the claim is missing: the webhook
// answers and its cache holds the claim.
func waitForWebhookCache(t *testing.T, timeout time.Duration) {
	t.Helper()
	probe := cloneYAML("cache-probe", sourceNamespace, sourceNamespace, sourceClaim, "2Gi")
	eventually(t, timeout, func() error {
		_, stderr, err := kubectlWithWarnings(t, probe, "create", "--dry-run=server", "-f", "-")
		if err != nil || strings.Contains(stderr, "does not exist yet") {
			return errorf("the webhook does not see %s/%s yet: %v %s", sourceNamespace, sourceClaim, err, stderr)
		}
		return nil
	})
}

// seedClonePermission applies the seed's ClusterRole and RoleBinding (6.10.1):
// destination-namespace's default service account may clone from
// source-namespace. Kept for all tests, like the source.
func seedClonePermission(t *testing.T) {
	t.Helper()
	_, err := kubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+destinationNamespace+"\n", "apply", "-f", "-")
	assert.NilError(t, err)
	kubectl(t, "apply", "-f", repoFile(t, "artifacts/examples/datavolume-cloner.yaml"))
	kubectl(t, "apply", "-f", repoFile(t, "artifacts/examples/allow-clone-to-user.yaml"))
}

func seedVirtualMachine(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(repoFile(t, "artifacts/examples/vm-dv-clone.yaml"))
	assert.NilError(t, err)
	return string(raw)
}

// withServiceAccount adds a serviceAccount volume (and its disk) to the
// seed VM's template, as KubeVirt VMs name the account they run as.
func withServiceAccount(t *testing.T, vm, account string) string {
	t.Helper()
	const disks, volumes = "          disks:\n", "      volumes:\n"
	assert.Assert(t, strings.Count(vm, disks) == 1 && strings.Count(vm, volumes) == 1, "unexpected VM manifest:\n%s", vm)
	vm = strings.Replace(vm, disks, disks+"          - disk: {}\n            name: account\n", 1)
	return strings.Replace(vm, volumes, volumes+"      - name: account\n        serviceAccount:\n          serviceAccountName: "+account+"\n", 1)
}

// kubectlWithWarnings runs kubectl as the admin and returns what it printed
// on each stream: admission warnings go to stderr ("Warning: ...").
func kubectlWithWarnings(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(testContext(t), cluster.KubectlBinary(), append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// attachLoopDevice attaches a sparse file of size to a free loop device,
// as the seed's 6.10.4 does with dd and losetup, and detaches it at the end.
func attachLoopDevice(t *testing.T, size int64) string {
	t.Helper()
	image := filepath.Join(t.TempDir(), "loop.img")
	f, err := os.Create(image)
	assert.NilError(t, err)
	assert.NilError(t, f.Truncate(size))
	assert.NilError(t, f.Close())
	out, err := exec.Command("losetup", "-f", "--show", image).CombinedOutput()
	assert.NilError(t, err, "losetup: %s", out)
	device := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", device).CombinedOutput(); err != nil {
			t.Errorf("detaching %s: %v: %s", device, err, out)
		}
	})
	info, err := os.Stat(device)
	assert.NilError(t, err)
	assert.Assert(t, info.Mode()&os.ModeDevice != 0, "%s is not a device", device)
	return device
}

// cloneAuditAnnotations finds kube-apiserver's audit event of the create of
// VM ns/name that answered code, and returns its clone.cdi.kubevirt.io/*
// annotations: those the webhook returned, prefixed with its name.
func cloneAuditAnnotations(t *testing.T, ns, name string, code int32) map[string]string {
	t.Helper()
	var found map[string]string
	eventually(t, 20*time.Second, func() error {
		events, err := readAudit(cluster.KubeAuditLog)
		if err != nil {
			return err
		}
		for _, e := range events {
			if e.Verb != "create" || e.Stage != auditv1.StageResponseComplete || e.ObjectRef == nil ||
				e.ObjectRef.APIGroup != "kubevirt.io" || e.ObjectRef.Resource != "virtualmachines" ||
				e.ObjectRef.Namespace != ns || e.ObjectRef.Name != name ||
				e.ResponseStatus == nil || e.ResponseStatus.Code != code {
				continue
			}
			found = map[string]string{}
			for key, value := range e.Annotations {
				if strings.HasPrefix(key, "clone.cdi.kubevirt.io/") {
					found[key] = value
				}
			}
			return nil
		}
		return errorf("no create of virtualmachine %s/%s answered %d among %d events", ns, name, code, len(events))
	})
	return found
}
