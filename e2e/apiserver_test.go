//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

// The seed's example-clone-dv.yaml, created as v1alpha1 with kubectl, reads
// back as v1beta1 with the same spec plus the documented default
// (contentType kubevirt), Pending with no progress, at generation 1.
func TestSeedCloneDataVolumeRoundTripsAcrossVersions(t *testing.T) {
	ns := "example-ns"
	kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { _, _ = cluster.Kubectl(context.Background(), "", "delete", "namespace", ns, "--wait=false") })

	out := kubectl(t, "create", "-n", ns, "-f", repoFile(t, "artifacts/examples/example-clone-dv.yaml"))
	assert.Check(t, is.Contains(out, "datavolume.cdi.kubevirt.io/example-clone-dv created"))

	var dv v1beta1.DataVolume
	getJSON(t, &dv, "-n", ns, "datavolumes.v1beta1.cdi.kubevirt.io", "example-clone-dv")
	assert.Equal(t, dv.APIVersion, "cdi.kubevirt.io/v1beta1")
	want := v1beta1.DataVolumeSpec{
		Source: &v1beta1.DataVolumeSource{PVC: &v1beta1.DataVolumeSourcePVC{Name: "source-pvc", Namespace: "example-ns"}},
		PVC: &corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1G")},
			},
		},
		ContentType: v1beta1.DataVolumeKubeVirt,
	}
	assert.DeepEqual(t, dv.Spec, want, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }))
	assert.Equal(t, dv.Status.Phase, v1beta1.Pending)
	assert.Equal(t, string(dv.Status.Progress), "N/A")
	assert.Equal(t, dv.Generation, int64(1))

	var alpha map[string]any
	getJSON(t, &alpha, "-n", ns, "datavolumes.v1alpha1.cdi.kubevirt.io", "example-clone-dv")
	assert.Equal(t, alpha["apiVersion"], "cdi.kubevirt.io/v1alpha1")

	// The README's quickstart: the demo disk served in the cluster becomes
	// source-pvc, which the seed's clone has been waiting for; both end
	// Ready, and the clone holds the source's bytes.
	kubectl(t, "create", "-n", ns, "-f", repoFile(t, "artifacts/examples/import-demo-disk.yaml"))
	waitFor(t, ns, "source-pvc", "condition=Ready", 3*time.Minute)
	waitFor(t, ns, "example-clone-dv", "condition=Ready", 3*time.Minute)
	source := filepath.Join(volumePath(t, ns, "source-pvc"), "disk.img")
	clone := filepath.Join(volumePath(t, ns, "example-clone-dv"), "disk.img")
	sourceSum, sourceSize := sha256Of(t, source, 1<<40)
	assert.Equal(t, sourceSize, int64(64<<20), "spec.storage 64Mi holds a 64 MiB image")
	cloneSum, cloneSize := sha256Of(t, clone, sourceSize)
	assert.Equal(t, cloneSum, sourceSum, "the clone starts with the source's bytes")
	assert.Assert(t, cloneSize >= sourceSize)
}

func TestKubectlGetPrintsColumns(t *testing.T) {
	ns := namespace(t, "columns")
	// A clone of a claim that does not exist: the controller leaves it
	// Pending, so the columns hold still.
	kubectlIn(t, cloneYAML("printed", ns, ns, "missing", "1Gi"), "create", "-f", "-")
	for _, resource := range []string{"dv", "dvs", "datavolumes", "datavolume.cdi.kubevirt.io"} {
		out := lines(kubectl(t, "get", resource, "-n", ns))
		assert.Assert(t, len(out) == 2, "kubectl get %s printed %q", resource, out)
		assert.DeepEqual(t, strings.Fields(out[0]), []string{"NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"})
		fields := strings.Fields(out[1])
		assert.DeepEqual(t, fields[:4], []string{"printed", "Pending", "N/A", "0"})
	}
	// "all" includes DataVolumes.
	assert.Check(t, is.Contains(kubectl(t, "get", "all", "-n", ns), "datavolume.cdi.kubevirt.io/printed"))
}

func TestKubectlExplain(t *testing.T) {
	out := kubectl(t, "explain", "datavolume.spec.source.pvc")
	assert.Check(t, is.Contains(out, "GROUP:      cdi.kubevirt.io"))
	assert.Check(t, is.Contains(out, "namespace"))
	assert.Check(t, is.Contains(out, "Namespace of the source claim"))
	assert.Check(t, is.Contains(out, "name\t<string>"))
}

func TestServerSideApply(t *testing.T) {
	ns := namespace(t, "ssa")
	manifest := dataVolumeYAML("applied", ns)
	out, err := kubectlIn(t, manifest, "apply", "--server-side", "--field-manager", "e2e", "-f", "-")
	assert.NilError(t, err)
	assert.Check(t, is.Contains(out, "serverside-applied"))

	// A second manager adds a label; the first re-applies without conflict.
	out, err = kubectlIn(t, strings.Replace(manifest, "metadata:\n", "metadata:\n  labels:\n    team: storage\n", 1),
		"apply", "--server-side", "--field-manager", "labeller", "-f", "-")
	assert.NilError(t, err, out)
	var dv v1beta1.DataVolume
	getJSON(t, &dv, "-n", ns, "dv", "applied", "--show-managed-fields")
	assert.Equal(t, dv.Labels["team"], "storage")
	var managers []string
	for _, f := range dv.ManagedFields {
		managers = append(managers, f.Manager)
	}
	assert.Check(t, is.Contains(managers, "e2e"))
	assert.Check(t, is.Contains(managers, "labeller"))

	// Changing the spec through apply is refused like any other update.
	_, err = kubectlIn(t, strings.Replace(manifest, "storage: 1Gi", "storage: 5Gi", 1),
		"apply", "--server-side", "--force-conflicts", "--field-manager", "e2e", "-f", "-")
	assert.ErrorContains(t, err, "immutable")
}

func TestWatchSeesChanges(t *testing.T) {
	ns := namespace(t, "watch")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cluster.KubectlBinary(), "--kubeconfig", cluster.Kubeconfig,
		"get", "dv", "-n", ns, "-w", "--output-watch-events", "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,TEAM:.object.metadata.labels.team")
	stdout, err := cmd.StdoutPipe()
	assert.NilError(t, err)
	assert.NilError(t, cmd.Start())
	defer func() { cancel(); _ = cmd.Wait() }()

	events := make(chan string, 16)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			events <- scanner.Text()
		}
		close(events)
	}()
	// Give the watch a moment to open, then change things.
	time.Sleep(time.Second)
	_, err = kubectlIn(t, dataVolumeYAML("watched", ns), "create", "-f", "-")
	assert.NilError(t, err)
	kubectl(t, "label", "dv", "watched", "-n", ns, "team=storage")
	kubectl(t, "delete", "dv", "watched", "-n", ns)

	var seen []string
	for _, want := range []string{"ADDED watched", "MODIFIED watched storage", "DELETED watched"} {
	next:
		for {
			select {
			case line, ok := <-events:
				if !ok {
					t.Fatalf("watch ended; saw %q", seen)
				}
				seen = append(seen, line)
				if strings.HasPrefix(strings.Join(strings.Fields(line), " "), want) {
					break next
				}
			case <-ctx.Done():
				t.Fatalf("no %q in the watch; saw %q", want, seen)
			}
		}
	}
}

func TestSpecIsImmutable(t *testing.T) {
	ns := namespace(t, "immutable")
	kubectlIn(t, dataVolumeYAML("fixed", ns), "create", "-f", "-")
	_, err := cluster.Kubectl(testContext(t), "", "patch", "dv", "fixed", "-n", ns, "--type=merge",
		"-p", `{"spec":{"contentType":"archive","pvc":{"resources":{"requests":{"storage":"9Gi"}}}}}`)
	assert.ErrorContains(t, err, "spec.contentType: Forbidden: the spec of a DataVolume is immutable")
	assert.ErrorContains(t, err, "spec.pvc: Forbidden")
	// Metadata may change.
	kubectl(t, "annotate", "dv", "fixed", "-n", ns, "note=hello")
}

func TestStatusUpdateCannotChangeSpec(t *testing.T) {
	ns := namespace(t, "status")
	// Waiting for a source that does not exist, the controller keeps the
	// phase and progress this test writes.
	kubectlIn(t, cloneYAML("progressing", ns, ns, "missing", "1Gi"), "create", "-f", "-")
	kubectl(t, "patch", "dv", "progressing", "-n", ns, "--subresource=status", "--type=merge",
		"-p", `{"spec":{"contentType":"archive"},"metadata":{"labels":{"sneaky":"yes"}},"status":{"phase":"ImportInProgress","progress":"42.00%","restartCount":1}}`)
	var dv v1beta1.DataVolume
	getJSON(t, &dv, "-n", ns, "dv", "progressing")
	assert.Equal(t, dv.Spec.ContentType, v1beta1.DataVolumeKubeVirt)
	assert.Check(t, is.Len(dv.Labels, 0))
	assert.Equal(t, dv.Status.Phase, v1beta1.ImportInProgress)
	assert.Equal(t, string(dv.Status.Progress), "42.00%")
	assert.Equal(t, dv.Status.RestartCount, int32(1))

	// And the main resource cannot change status.
	kubectl(t, "patch", "dv", "progressing", "-n", ns, "--type=merge", "-p", `{"status":{"phase":"Succeeded"}}`)
	getJSON(t, &dv, "-n", ns, "dv", "progressing")
	assert.Equal(t, dv.Status.Phase, v1beta1.ImportInProgress)

	// A status that makes no sense is refused.
	_, err := cluster.Kubectl(testContext(t), "", "patch", "dv", "progressing", "-n", ns, "--subresource=status", "--type=merge",
		"-p", `{"status":{"phase":"Dancing","progress":"142%"}}`)
	assert.ErrorContains(t, err, "status.phase: Unsupported value")
	assert.ErrorContains(t, err, "status.progress: Invalid value")
}

// An invalid DataVolume is refused with 422 listing every problem with its
// field path, and nothing is stored.
func TestInvalidDataVolumeListsEveryFieldError(t *testing.T) {
	ns := namespace(t, "invalid")
	bad := `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: broken
  namespace: ` + ns + `
spec:
  contentType: archive
  source:
    http:
      url: "ftp://example/disk.img"
      checksum: "sha256:abc"
    upload: {}
  pvc:
    volumeMode: Block
    resources:
      requests:
        storage: "0"
`
	_, err := kubectlIn(t, bad, "create", "-f", "-")
	for _, want := range []string{
		`The DataVolume "broken" is invalid`,
		"spec.source: Forbidden: exactly one source may be set, found http, upload",
		"spec.source.http.url: Invalid value",
		"spec.source.http.checksum: Invalid value",
		"spec.source.upload: Forbidden: contentType archive cannot be imported from upload",
		"spec.pvc.accessModes: Required value",
		"spec.pvc.resources.requests.storage: Invalid value: \"0\": must be greater than zero",
		"spec.pvc.volumeMode: Forbidden: contentType archive needs a Filesystem volume",
	} {
		assert.ErrorContains(t, err, want)
	}

	// The same through the generated client: HTTP 422 with one cause per problem.
	dv := &v1beta1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "broken"},
		Spec:       v1beta1.DataVolumeSpec{ContentType: "iso"},
	}
	_, err = cdi(t, "").CdiV1beta1().DataVolumes(ns).Create(testContext(t), dv, metav1.CreateOptions{})
	assert.Assert(t, apierrors.IsInvalid(err), "%v", err)
	status := err.(apierrors.APIStatus).Status()
	assert.Equal(t, status.Code, int32(422))
	var fields []string
	for _, c := range status.Details.Causes {
		fields = append(fields, c.Field)
	}
	assert.DeepEqual(t, fields, []string{"spec.contentType", "spec.source", "spec.pvc"})

	assert.Equal(t, strings.TrimSpace(kubectl(t, "get", "dv", "-n", ns, "-o", "name")), "")
}

func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	ns := namespace(t, "badinput")
	cases := map[string]struct {
		manifest string
		want     string
	}{
		"malformed yaml": {manifest: "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: [\n", want: "error"},
		"malformed json": {manifest: `{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"DataVolume",`, want: "error"},
		"unknown field": {
			manifest: strings.Replace(dataVolumeYAML("unknown", ns), "spec:\n", "spec:\n  sauce: hot\n", 1),
			want:     `unknown field "spec.sauce"`,
		},
		"wrong version": {
			manifest: strings.Replace(dataVolumeYAML("wrongversion", ns), "cdi.kubevirt.io/v1beta1", "cdi.kubevirt.io/v9", 1),
			want:     `no matches for kind "DataVolume" in version "cdi.kubevirt.io/v9"`,
		},
		"oversized": {
			manifest: strings.Replace(dataVolumeYAML("oversized", ns), "metadata:\n", "metadata:\n  annotations:\n    big: \""+strings.Repeat("x", 4<<20)+"\"\n", 1),
			want:     "Request entity too large",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := kubectlIn(t, tc.manifest, "create", "-f", "-")
			assert.ErrorContains(t, err, tc.want, out)
		})
	}
	assert.Equal(t, strings.TrimSpace(kubectl(t, "get", "dv", "-n", ns, "-o", "name")), "")
}

func TestUserWithoutRBACIsForbidden(t *testing.T) {
	ns := namespace(t, "rbac")
	eve, err := cluster.UserKubeconfig("eve")
	assert.NilError(t, err)
	_, err = kubectlAs(t, eve, "get", "dv", "-n", ns)
	assert.ErrorContains(t, err, `User "eve" cannot list resource "datavolumes" in API group "cdi.kubevirt.io" in the namespace "`+ns+`"`)
	_, err = kubectlIn(t, dataVolumeYAML("eves", ns), "--kubeconfig", eve, "create", "-f", "-")
	assert.ErrorContains(t, err, "Forbidden")

	// The built-in edit role covers DataVolumes (artifacts/deploy/apiserver/user-roles.yaml).
	kubectl(t, "create", "rolebinding", "eve-edit", "-n", ns, "--clusterrole=edit", "--user=eve")
	eventually(t, 30*time.Second, func() error {
		_, err := kubectlIn(t, dataVolumeYAML("eves", ns), "--kubeconfig", eve, "create", "-f", "-")
		return err
	})
}

// The audit log of datavolume-apiserver records DataVolume creates with the
// request and response.
func TestAuditLogHoldsCreate(t *testing.T) {
	ns := namespace(t, "audit")
	kubectlIn(t, dataVolumeYAML("audited", ns), "create", "-f", "-")
	eventually(t, 20*time.Second, func() error {
		events, err := readAudit(cluster.AuditLog)
		if err != nil {
			return err
		}
		for _, e := range events {
			if e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Resource == "datavolumes" &&
				e.ObjectRef.Namespace == ns && e.ObjectRef.Name == "audited" && e.Stage == auditv1.StageResponseComplete {
				if e.Level != auditv1.LevelRequestResponse || e.ResponseStatus == nil || e.ResponseStatus.Code != 201 || e.RequestObject == nil {
					return errorf("event incomplete: %+v", e)
				}
				if e.User.Username != "kubernetes-admin" {
					return errorf("user %q", e.User.Username)
				}
				return nil
			}
		}
		return errorf("no create event among %d", len(events))
	})
}

// The apiserver's pod holds nothing: a new one serves what was stored. And
// its etcd keeps the data on a PersistentVolumeClaim, so a new etcd pod
// serves it too.
func TestDataVolumesSurvivePodDeletion(t *testing.T) {
	ns := namespace(t, "restart")
	out, err := kubectlIn(t, dataVolumeYAML("durable", ns), "create", "-f", "-")
	assert.NilError(t, err, out)
	uid := kubectl(t, "get", "dv", "durable", "-n", ns, "-o", "jsonpath={.metadata.uid}")

	assert.NilError(t, cluster.DeleteAPIServerPod(testContext(t)))
	assert.Equal(t, kubectl(t, "get", "dv", "durable", "-n", ns, "-o", "jsonpath={.metadata.uid}"), uid)

	kubectl(t, "delete", "pod", "-n", "datavolume-system", "datavolume-etcd-0", "--wait=true")
	kubectl(t, "rollout", "status", "-n", "datavolume-system", "statefulset/datavolume-etcd", "--timeout=120s")
	eventually(t, 60*time.Second, func() error {
		got, err := cluster.Kubectl(testContext(t), "", "get", "dv", "durable", "-n", ns, "-o", "jsonpath={.metadata.uid}")
		if err != nil {
			return err
		}
		if got != uid {
			return errorf("DataVolume uid %q after the etcd pod came back, want %q", got, uid)
		}
		return nil
	})
}

// readAudit parses an audit log with the apiserver's own types.
func readAudit(path string) ([]auditv1.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []auditv1.Event
	dec := json.NewDecoder(f)
	for {
		var e auditv1.Event
		if err := dec.Decode(&e); err == io.EOF {
			return events, nil
		} else if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
}

// dataVolumeYAML is a minimal valid DataVolume.
func dataVolumeYAML(name, ns string) string {
	return `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: ` + name + `
  namespace: ` + ns + `
spec:
  source:
    blank: {}
  pvc:
    accessModes: ["ReadWriteOnce"]
    resources:
      requests:
        storage: 1Gi
`
}

// Deleting a namespace deletes its DataVolumes and ends: kube-controller-
// manager's namespace deleter lists and deletes them through the aggregator
// asking for protobuf first, which the DataVolume types do not have.
func TestNamespaceWithDataVolumesIsDeleted(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "deleted")
	create(t, ns, cloneYAML("waits", ns, ns, "missing", claimSize))
	kubectl(t, "delete", "namespace", ns, "--wait=false")
	eventually(t, 2*time.Minute, func() error {
		out, err := cluster.Kubectl(testContext(t), "", "get", "namespace", ns, "-o", `jsonpath={.status.conditions[?(@.type=="NamespaceDeletionContentFailure")].message}`)
		if err != nil && strings.Contains(err.Error()+out, "NotFound") {
			return nil
		}
		return errorf("namespace %s still there: %s %v", ns, out, err)
	})
}
