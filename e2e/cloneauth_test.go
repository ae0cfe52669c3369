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
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// Clone authorization end to end: real RBAC in a real kube-apiserver, the
// SubjectAccessReviews datavolume-apiserver sends it, the 403s kubectl
// prints, the grants stored on DataVolumes and the audit log.

const (
	seedSource      = "source-namespace"
	seedDestination = "destination-namespace"
	seedClaim       = "my-favorite-vm-disk"
	seedServiceAcct = "system:serviceaccount:destination-namespace:default"
)

// identity is who runs kubectl: a client-certificate user (kubeconfig set),
// or someone the admin impersonates.
type identity struct {
	name       string
	groups     []string
	kubeconfig string
}

// certUser is a user authenticated by a client certificate with groups.
func certUser(t *testing.T, name string, groups ...string) identity {
	t.Helper()
	kubeconfig, err := cluster.UserKubeconfig(name, groups...)
	assert.NilError(t, err)
	return identity{name: name, groups: groups, kubeconfig: kubeconfig}
}

// impersonated is a user (or service account) the admin acts as.
func impersonated(name string) identity { return identity{name: name} }

func (id identity) asFlags() []string {
	flags := []string{"--as=" + id.name}
	for _, g := range id.groups {
		flags = append(flags, "--as-group="+g)
	}
	return flags
}

// run runs kubectl as id: with its own kubeconfig, or impersonated.
func (id identity) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	if id.kubeconfig != "" {
		return cluster.Kubectl(testContext(t), stdin, append([]string{"--kubeconfig", id.kubeconfig}, args...)...)
	}
	return cluster.Kubectl(testContext(t), stdin, append(args, id.asFlags()...)...)
}

// canI asks `kubectl auth can-i ... --as=<id>` as the admin.
func canI(t *testing.T, id identity, args ...string) bool {
	t.Helper()
	out, err := cluster.Kubectl(testContext(t), "", append(append([]string{"auth", "can-i"}, args...), id.asFlags()...)...)
	switch strings.TrimSpace(out) {
	case "yes":
		assert.NilError(t, err)
		return true
	case "no":
		return false
	}
	t.Fatalf("kubectl auth can-i %s: %q, %v", strings.Join(args, " "), out, err)
	return false
}

// canCloneBySource is what an administrator asks to see whether id may clone
// the claim through datavolumes/source.
func canCloneBySource(t *testing.T, id identity, sourceNamespace, claim string) bool {
	t.Helper()
	return canI(t, id, "create", "datavolumes/"+claim, "--subresource=source", "-n", sourceNamespace)
}

func claimYAML(name, ns, size string, mode corev1.PersistentVolumeMode, storageClass string) string {
	y := `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ` + name + `
  namespace: ` + ns + `
spec:
  accessModes: ["ReadWriteOnce"]
  resources:
    requests:
      storage: ` + size + `
`
	if mode != "" {
		y += "  volumeMode: " + string(mode) + "\n"
	}
	if storageClass != "" {
		y += "  storageClassName: " + storageClass + "\n"
	}
	return y
}

// createClaim creates a claim; with no node it stays Pending, which is all a
// clone check needs.
func createClaim(t *testing.T, name, ns, size string, mode corev1.PersistentVolumeMode, storageClass string) {
	t.Helper()
	out, err := kubectlIn(t, claimYAML(name, ns, size, mode, storageClass), "create", "-f", "-")
	assert.NilError(t, err, out)
}

// cloneAs creates the clone DataVolume as id.
func cloneAs(t *testing.T, id identity, name, ns, sourceNamespace, claim string) (string, error) {
	t.Helper()
	return id.run(t, cloneYAML(name, ns, sourceNamespace, claim, "2Gi"), "create", "-f", "-")
}

// allowEdit binds the built-in edit role (which covers DataVolumes) to a
// user or service account in ns and waits until RBAC says so.
func allowEdit(t *testing.T, id identity, ns string) {
	t.Helper()
	subject := "--user=" + id.name
	if sa, ok := strings.CutPrefix(id.name, "system:serviceaccount:"); ok {
		subject = "--serviceaccount=" + sa
	}
	kubectl(t, "create", "rolebinding", "edit-"+safeName(id.name), "-n", ns, "--clusterrole=edit", subject)
	eventually(t, 30*time.Second, func() error {
		if !canI(t, id, "create", "datavolumes.cdi.kubevirt.io", "-n", ns) {
			return errorf("%s may not create datavolumes in %s yet", id.name, ns)
		}
		return nil
	})
}

func safeName(s string) string { return strings.NewReplacer(":", "-", "/", "-").Replace(s) }

// allowCloneFrom binds a Role named role in src that lets subject (a YAML
// subject entry) create datavolumes/source, and waits until RBAC says id
// (that subject, acting) may clone claim.
func allowCloneFrom(t *testing.T, src, role, subject string, id identity, claim string) {
	t.Helper()
	createRoleAndBinding(t, src, role, `- apiGroups: ["cdi.kubevirt.io"]
  resources: ["datavolumes/source"]
  verbs: ["create"]
`, subject)
	eventually(t, 30*time.Second, func() error {
		if !canCloneBySource(t, id, src, claim) {
			return errorf("RBAC does not let %s clone %s/%s yet", id.name, src, claim)
		}
		return nil
	})
}

// createRole creates a Role from rules given as YAML, and binds it to the
// subject (a YAML subject entry).
func createRoleAndBinding(t *testing.T, ns, name, rules, subject string) {
	t.Helper()
	manifest := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: ` + name + `
  namespace: ` + ns + `
rules:
` + rules + `---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ` + name + `
  namespace: ` + ns + `
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: ` + name + `
subjects:
` + subject
	out, err := kubectlIn(t, manifest, "create", "-f", "-")
	assert.NilError(t, err, out)
}

func userSubject(name string) string {
	return "- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: " + name + "\n"
}

func groupSubject(name string) string {
	return "- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: " + name + "\n"
}

// assertCloneForbidden checks the 403 kubectl prints for a denied clone and
// that nothing was stored.
func assertCloneForbidden(t *testing.T, out string, err error, user, name, ns, sourceNamespace, claim string) {
	t.Helper()
	assert.Assert(t, err != nil, "the clone was allowed: %s", out)
	msg := err.Error()
	assert.Check(t, is.Contains(msg, "Error from server (Forbidden)"))
	assert.Check(t, is.Contains(msg, `datavolumes.cdi.kubevirt.io "`+name+`" is forbidden`))
	assert.Check(t, is.Contains(msg, `user "`+user+`" may not clone PersistentVolumeClaim "`+sourceNamespace+"/"+claim+`" into namespace "`+ns+`"`))
	assert.Check(t, is.Contains(msg, `missing permission create datavolumes/source (cdi.kubevirt.io) on "`+claim+`" in namespace "`+sourceNamespace+`" (or create pods in "`+sourceNamespace+`")`))
	_, getErr := cluster.Kubectl(testContext(t), "", "get", "dv", name, "-n", ns)
	assert.Check(t, is.ErrorContains(getErr, "NotFound"), "a denied clone was stored")
}

// storedDataVolume reads a DataVolume as the admin.
func storedDataVolume(t *testing.T, name, ns string) v1beta1.DataVolume {
	t.Helper()
	var dv v1beta1.DataVolume
	getJSON(t, &dv, "datavolumes.v1beta1.cdi.kubevirt.io", name, "-n", ns)
	return dv
}

// clusterPublicKeys are the public keys the controller verifies grants
// with, read from the cluster's ConfigMap: it also holds keys a rotation
// (running beside other tests) added after the cluster started.
func clusterPublicKeys(t *testing.T) *cloneauth.PublicKeySet {
	t.Helper()
	var cm corev1.ConfigMap
	getJSON(t, &cm, "configmap", "datavolume-clone-grant-public-keys", "-n", "datavolume-system")
	dir := t.TempDir()
	for id, pem := range cm.Data {
		assert.NilError(t, os.WriteFile(filepath.Join(dir, id), []byte(pem), 0o600))
	}
	keys, err := cloneauth.LoadPublicKeySet(dir)
	assert.NilError(t, err)
	return keys
}

// assertGrantVerifies checks that the stored DataVolume carries a grant
// signed by the server for exactly this clone.
func assertGrantVerifies(t *testing.T, name, ns, sourceNamespace, claim string) cloneauth.Grant {
	t.Helper()
	dv := storedDataVolume(t, name, ns)
	token := dv.Annotations[cloneauth.GrantAnnotation]
	assert.Assert(t, token != "", "no grant on %s/%s: %v", ns, name, dv.Annotations)
	keys := clusterPublicKeys(t)
	want := cloneauth.Target{Namespace: ns, Name: name, UID: dv.UID, SourceNamespace: sourceNamespace, SourceName: claim}
	grant, err := keys.Verify(token, want, time.Now())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(grant.Issuer, "datavolume-apiserver"))
	// It is bound to this DataVolume's UID: a DataVolume of the same name
	// created later could not reuse it.
	want.UID = "another-uid"
	_, err = keys.Verify(token, want, time.Now())
	assert.Check(t, is.ErrorIs(err, cloneauth.ErrGrantWrongTarget))
	return grant
}

// cloneSource GETs namespaces/<ns>/datavolumes/<claim>/source as id.
func cloneSource(t *testing.T, id identity, ns, claim string) (v1beta1.CloneSource, error) {
	t.Helper()
	var src v1beta1.CloneSource
	out, err := id.run(t, "", "get", "--raw", "/apis/cdi.kubevirt.io/v1beta1/namespaces/"+ns+"/datavolumes/"+claim+"/source")
	if err != nil {
		return src, err
	}
	assert.NilError(t, json.Unmarshal([]byte(out), &src), out)
	return src, nil
}

// auditedCreate finds the completed create of the DataVolume ns/name by user
// in datavolume-apiserver's audit log.
func auditedCreate(t *testing.T, ns, name, user string) auditv1.Event {
	t.Helper()
	var found auditv1.Event
	eventually(t, 20*time.Second, func() error {
		events, err := readAudit(cluster.AuditLog)
		if err != nil {
			return err
		}
		for _, e := range events {
			if e.Verb == "create" && e.Stage == auditv1.StageResponseComplete && e.ObjectRef != nil &&
				e.ObjectRef.APIGroup == "cdi.kubevirt.io" && e.ObjectRef.Resource == "datavolumes" &&
				e.ObjectRef.Subresource == "" && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == name &&
				e.User.Username == user {
				found = e
				return nil
			}
		}
		return errorf("no completed create of %s/%s by %s among %d events", ns, name, user, len(events))
	})
	return found
}

// cloneAnnotations are the clone.cdi.kubevirt.io/ annotations of an event.
func cloneAnnotations(e auditv1.Event) map[string]string {
	out := map[string]string{}
	for k, v := range e.Annotations {
		if strings.HasPrefix(k, cloneauth.AnnotationPrefix) {
			out[k] = v
		}
	}
	return out
}

// The seed's ClusterRole and RoleBinding, applied verbatim, let the default
// ServiceAccount of destination-namespace clone from source-namespace and
// nobody else; removing the binding revokes at once. The audit log holds
// both decisions.
func TestCloneSeedRBAC(t *testing.T) {
	// The seed's names are fixed and shared with webhook_test.go, which keeps
	// the namespaces, the claim and the seed's permission for all tests:
	// apply them, never delete them, and leave the permission as found.
	_, err := kubectlIn(t, `apiVersion: v1
kind: Namespace
metadata:
  name: `+seedSource+`
---
apiVersion: v1
kind: Namespace
metadata:
  name: `+seedDestination+`
---
`+claimYAML(seedClaim, seedSource, "2Gi", "", ""), "apply", "-f", "-")
	assert.NilError(t, err)
	clusterRole := repoFile(t, "artifacts/examples/datavolume-cloner.yaml")
	roleBinding := repoFile(t, "artifacts/examples/allow-clone-to-user.yaml")
	// Created verbatim, as the seed's instructions say.
	kubectl(t, "delete", "--ignore-not-found", "-f", roleBinding, "-f", clusterRole)
	out := kubectl(t, "create", "-f", clusterRole)
	assert.Check(t, is.Contains(out, "clusterrole.rbac.authorization.k8s.io/datavolume-cloner created"))
	out = kubectl(t, "create", "-f", roleBinding)
	assert.Check(t, is.Contains(out, "rolebinding.rbac.authorization.k8s.io/allow-clone-to-user created"))
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = cluster.Kubectl(ctx, "", "apply", "-f", clusterRole, "-f", roleBinding)
		_, _ = cluster.Kubectl(ctx, "", "delete", "dv", "cloner-datavolume", "-n", seedDestination, "--ignore-not-found")
	})

	sa := impersonated(seedServiceAcct)
	allowEdit(t, sa, seedDestination)
	mallory := certUser(t, "mallory")
	allowEdit(t, mallory, seedDestination)

	// Denied: a user with no binding in the source namespace. kubectl auth
	// can-i and the apiserver agree.
	seedDV := repoFile(t, "artifacts/examples/cloner-datavolume.yaml")
	assert.Check(t, !canCloneBySource(t, mallory, seedSource, seedClaim))
	out, err = mallory.run(t, "", "create", "-n", seedDestination, "-f", seedDV)
	assertCloneForbidden(t, out, err, "mallory", "cloner-datavolume", seedDestination, seedSource, seedClaim)
	t.Logf("mallory: %v", err)
	// Mallory may not read datavolumes/source either.
	_, err = cloneSource(t, mallory, seedSource, seedClaim)
	assert.Check(t, is.ErrorContains(err, "Forbidden"))

	// Allowed: the seed's ServiceAccount.
	assert.Assert(t, canCloneBySource(t, sa, seedSource, seedClaim))
	out, err = sa.run(t, "", "create", "-n", seedDestination, "-f", seedDV)
	assert.NilError(t, err, out)
	assert.Check(t, is.Contains(out, "datavolume.cdi.kubevirt.io/cloner-datavolume created"))
	grant := assertGrantVerifies(t, "cloner-datavolume", seedDestination, seedSource, seedClaim)
	assert.Check(t, grant.Expires.After(time.Now().Add(time.Hour)), "grant expires %s", grant.Expires)

	// What the ServiceAccount may clone, and what it is.
	src, err := cloneSource(t, sa, seedSource, seedClaim)
	assert.NilError(t, err)
	assert.Check(t, src.Status.Allowed)
	assert.Check(t, is.Contains(src.Status.Reason, `RoleBinding "allow-clone-to-user/source-namespace"`))
	assert.Check(t, src.Status.Capacity.Cmp(resource.MustParse("2Gi")) == 0, "capacity %s", src.Status.Capacity.String())
	assert.Check(t, is.Equal(src.Status.VolumeMode, corev1.PersistentVolumeFilesystem))
	assert.Check(t, is.Equal(src.Name, seedClaim))

	// The audit log, parsed with the apiserver's types.
	allowed := auditedCreate(t, seedDestination, "cloner-datavolume", seedServiceAcct)
	assert.Check(t, is.Equal(allowed.ResponseStatus.Code, int32(201)))
	got := cloneAnnotations(allowed)
	assert.Check(t, is.Equal(got[cloneauth.AuditDecision], "allow"))
	assert.Check(t, is.Contains(got[cloneauth.AuditReason],
		`RBAC: allowed by RoleBinding "allow-clone-to-user/source-namespace" of ClusterRole "datavolume-cloner" to ServiceAccount "default/destination-namespace"`))
	assert.Check(t, is.Equal(got[cloneauth.AuditSource], seedSource+"/"+seedClaim))
	assert.Check(t, is.Equal(got[cloneauth.AuditTarget], seedDestination+"/cloner-datavolume"))
	assert.Check(t, is.Equal(got[cloneauth.AuditServiceAccount], seedDestination+"/default"))

	denied := auditedCreate(t, seedDestination, "cloner-datavolume", "mallory")
	assert.Check(t, is.Equal(denied.ResponseStatus.Code, int32(403)))
	got = cloneAnnotations(denied)
	t.Logf("audit annotations of the denial: %v", got)
	assert.Check(t, is.Equal(got[cloneauth.AuditDecision], "deny"))
	assert.Check(t, is.Contains(got[cloneauth.AuditReason], `create cdi.kubevirt.io/datavolumes/source "my-favorite-vm-disk" in namespace "source-namespace"`))
	assert.Check(t, is.Equal(got[cloneauth.AuditSource], seedSource+"/"+seedClaim))
	assert.Check(t, is.Equal(got[cloneauth.AuditTarget], seedDestination+"/cloner-datavolume"))

	// Revocation: once RBAC no longer allows it, creates are denied as soon
	// as the clone check's cached answer expires (10 s). A create admitted
	// before that moves no data: the controller asks again, uncached
	// (TestRevokedCloneWaitsAndResumes).
	kubectl(t, "delete", "-f", repoFile(t, "artifacts/examples/allow-clone-to-user.yaml"))
	eventually(t, 30*time.Second, func() error {
		if canCloneBySource(t, sa, seedSource, seedClaim) {
			return errorf("RBAC still allows the clone")
		}
		return nil
	})
	revoked := time.Now()
	attempt := 0
	eventually(t, 30*time.Second, func() error {
		attempt++
		name := fmt.Sprintf("after-revoke-%d", attempt)
		out, err = cloneAs(t, sa, name, seedDestination, seedSource, seedClaim)
		if err == nil {
			_, _ = cluster.Kubectl(testContext(t), "", "delete", "dv", name, "-n", seedDestination, "--wait=false")
			return errorf("admitted %s after the revocation (cached for up to 10 s)", name)
		}
		assertCloneForbidden(t, out, err, seedServiceAcct, name, seedDestination, seedSource, seedClaim)
		return nil
	})
	assert.Check(t, time.Since(revoked) < 15*time.Second, "denied only after %s", time.Since(revoked))
	src, err = cloneSource(t, sa, seedSource, seedClaim)
	assert.Check(t, is.ErrorContains(err, "Forbidden"), "%+v", src)
}

// A RoleBinding to a Group lets every member clone.
func TestCloneThroughGroupBinding(t *testing.T) {
	src, dst := namespace(t, "grp-src"), namespace(t, "grp-dst")
	createClaim(t, "disk", src, "1Gi", corev1.PersistentVolumeFilesystem, "")
	group := "cloners-" + src
	createRoleAndBinding(t, src, "group-cloner", `- apiGroups: ["cdi.kubevirt.io"]
  resources: ["datavolumes/source"]
  verbs: ["create", "get"]
`, groupSubject(group))
	gina := certUser(t, "gina", group)
	allowEdit(t, gina, dst)
	// The same user without the group may not.
	assert.Check(t, !canCloneBySource(t, impersonated("gina"), src, "disk"))

	eventually(t, 30*time.Second, func() error {
		if !canCloneBySource(t, gina, src, "disk") {
			return errorf("RBAC does not allow the group yet")
		}
		return nil
	})
	out, err := cloneAs(t, gina, "copy", dst, src, "disk")
	assert.NilError(t, err, out)
	assertGrantVerifies(t, "copy", dst, src, "disk")
	e := auditedCreate(t, dst, "copy", "gina")
	assert.Check(t, is.Contains(e.User.Groups, group))
	assert.Check(t, is.Equal(e.Annotations[cloneauth.AuditDecision], "allow"))
	assert.Check(t, is.Contains(e.Annotations[cloneauth.AuditReason], `RoleBinding "group-cloner/`+src+`" of Role "group-cloner" to Group "`+group+`"`))
}

// resourceNames on datavolumes/source name the claims that may be cloned.
func TestCloneRoleWithResourceNames(t *testing.T) {
	src, dst := namespace(t, "rn-src"), namespace(t, "rn-dst")
	createClaim(t, "one-pvc", src, "1Gi", corev1.PersistentVolumeFilesystem, "")
	createClaim(t, "other-pvc", src, "1Gi", corev1.PersistentVolumeFilesystem, "")
	createRoleAndBinding(t, src, "one-pvc-cloner", `- apiGroups: ["cdi.kubevirt.io"]
  resources: ["datavolumes/source"]
  resourceNames: ["one-pvc"]
  verbs: ["create", "get"]
`, userSubject("rita"))
	rita := certUser(t, "rita")
	allowEdit(t, rita, dst)
	eventually(t, 30*time.Second, func() error {
		if !canCloneBySource(t, rita, src, "one-pvc") {
			return errorf("RBAC does not allow one-pvc yet")
		}
		return nil
	})

	out, err := cloneAs(t, rita, "one", dst, src, "one-pvc")
	assert.NilError(t, err, out)
	assertGrantVerifies(t, "one", dst, src, "one-pvc")
	s, err := cloneSource(t, rita, src, "one-pvc")
	assert.NilError(t, err)
	assert.Check(t, s.Status.Allowed)

	assert.Check(t, !canCloneBySource(t, rita, src, "other-pvc"))
	out, err = cloneAs(t, rita, "other", dst, src, "other-pvc")
	assertCloneForbidden(t, out, err, "rita", "other", dst, src, "other-pvc")
	_, err = cloneSource(t, rita, src, "other-pvc")
	assert.Check(t, is.ErrorContains(err, "Forbidden"))
}

// Whoever may create pods in the source namespace may clone from it: the
// fallback. kubectl auth can-i on datavolumes/source says no, on pods yes.
func TestClonePodsFallback(t *testing.T) {
	src, dst := namespace(t, "pods-src"), namespace(t, "pods-dst")
	createClaim(t, "disk", src, "1Gi", corev1.PersistentVolumeFilesystem, "")
	createRoleAndBinding(t, src, "pod-runner", `- apiGroups: [""]
  resources: ["pods"]
  verbs: ["create"]
`, userSubject("pat"))
	pat := certUser(t, "pat")
	allowEdit(t, pat, dst)
	eventually(t, 30*time.Second, func() error {
		if !canI(t, pat, "create", "pods", "-n", src) {
			return errorf("RBAC does not allow pods yet")
		}
		return nil
	})
	assert.Check(t, !canCloneBySource(t, pat, src, "disk"))

	out, err := cloneAs(t, pat, "copy", dst, src, "disk")
	assert.NilError(t, err, out)
	assertGrantVerifies(t, "copy", dst, src, "disk")
	e := auditedCreate(t, dst, "copy", "pat")
	assert.Check(t, is.Equal(e.Annotations[cloneauth.AuditDecision], "allow"))
	assert.Check(t, is.Contains(e.Annotations[cloneauth.AuditReason], `RoleBinding "pod-runner/`+src+`" of Role "pod-runner" to User "pat"`))

	// Pat may clone but not read datavolumes/source.
	_, err = cloneSource(t, pat, src, "disk")
	assert.Check(t, is.ErrorContains(err, "Forbidden"))
}

// datavolumes/source describes the claim to whoever may read it and says
// whether they may clone it.
func TestCloneSourceSubresource(t *testing.T) {
	src := namespace(t, "desc-src")
	createClaim(t, "blockdisk", src, "3Gi", corev1.PersistentVolumeBlock, "fast")
	createRoleAndBinding(t, src, "cloner", `- apiGroups: ["cdi.kubevirt.io"]
  resources: ["datavolumes/source"]
  verbs: ["get", "create"]
`, userSubject("viv"))
	createRoleAndBinding(t, src, "looker", `- apiGroups: ["cdi.kubevirt.io"]
  resources: ["datavolumes/source"]
  verbs: ["get"]
`, userSubject("gus"))
	// A pod that mounts the claim (Pending: there is no node).
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: reader
  namespace: ` + src + `
spec:
  containers:
  - name: c
    image: busybox
    volumeDevices:
    - name: disk
      devicePath: /dev/disk0
  volumes:
  - name: disk
    persistentVolumeClaim:
      claimName: blockdisk
`
	eventually(t, 30*time.Second, func() error { // the namespace's default ServiceAccount comes first
		_, err := kubectlIn(t, pod, "create", "-f", "-")
		return err
	})
	viv, gus, nobody := certUser(t, "viv"), certUser(t, "gus"), certUser(t, "nobody")

	var s v1beta1.CloneSource
	eventually(t, 30*time.Second, func() error {
		var err error
		s, err = cloneSource(t, viv, src, "blockdisk")
		return err
	})
	assert.Check(t, s.Status.Allowed)
	assert.Check(t, is.Contains(s.Status.Reason, `RoleBinding "cloner/`+src+`" of Role "cloner" to User "viv"`))
	assert.Check(t, s.Status.Capacity.Cmp(resource.MustParse("3Gi")) == 0, "capacity %s", s.Status.Capacity.String())
	assert.Check(t, is.Equal(s.Status.VolumeMode, corev1.PersistentVolumeBlock))
	assert.Check(t, is.Equal(s.Status.StorageClassName, "fast"))
	assert.Check(t, is.Equal(s.Status.Phase, corev1.ClaimPending))
	assert.Check(t, s.Status.InUse)
	assert.Check(t, is.DeepEqual(s.Status.UsedBy, []string{"reader"}))
	assert.Check(t, canCloneBySource(t, viv, src, "blockdisk"))

	// Reading is not cloning.
	eventually(t, 30*time.Second, func() error {
		var err error
		s, err = cloneSource(t, gus, src, "blockdisk")
		return err
	})
	assert.Check(t, !s.Status.Allowed)
	assert.Check(t, is.Contains(s.Status.Reason, `missing permission create cdi.kubevirt.io/datavolumes/source "blockdisk" in namespace "`+src+`"`))
	assert.Check(t, !canCloneBySource(t, gus, src, "blockdisk"))

	// No get on datavolumes/source: 403.
	_, err := cloneSource(t, nobody, src, "blockdisk")
	assert.Check(t, is.ErrorContains(err, "Forbidden"))
	assert.Check(t, is.ErrorContains(err, `cannot get resource "datavolumes/source" in API group "cdi.kubevirt.io"`))
}

// A clone within one namespace needs only create datavolumes there: no
// datavolumes/source, no SubjectAccessReview, no grant.
func TestCloneSameNamespaceNeedsNoSourcePermission(t *testing.T) {
	ns := namespace(t, "same")
	createClaim(t, "disk", ns, "1Gi", corev1.PersistentVolumeFilesystem, "")
	sam := certUser(t, "sam")
	allowEdit(t, sam, ns)
	assert.Check(t, !canCloneBySource(t, sam, ns, "disk"), "sam should have nothing but edit")

	out, err := cloneAs(t, sam, "copy", ns, ns, "disk")
	assert.NilError(t, err, out)
	dv := storedDataVolume(t, "copy", ns)
	_, hasGrant := dv.Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !hasGrant, "a same-namespace clone needs no grant: %v", dv.Annotations)
	e := auditedCreate(t, ns, "copy", "sam")
	assert.Check(t, is.Len(cloneAnnotations(e), 0), "a same-namespace clone is not decided: %v", e.Annotations)

	// No SubjectAccessReview: a denied clone check logs one line naming its
	// target (an allowed one only at -v=2; the audit log has each). A
	// cross-namespace clone sam may not make, tried afterwards, shows the
	// log is written; the same-namespace one has no line.
	other := namespace(t, "same-x")
	out, err = cloneAs(t, sam, "probe", ns, other, "disk")
	assert.Assert(t, err != nil, "sam cloned from %s without the permission: %s", other, out)
	var log string
	eventually(t, 20*time.Second, func() error {
		log = apiserverLog(t)
		if !strings.Contains(log, `target="`+ns+`/probe"`) {
			return errorf("no clone decision for %s/probe in the log of datavolume-apiserver", ns)
		}
		return nil
	})
	assert.Check(t, !strings.Contains(log, `target="`+ns+`/copy"`), "a same-namespace clone was checked")
}

// A grant comes only from the server: one a client sends is dropped or
// replaced on create, and no update changes or removes a stored grant.
func TestCloneGrantAnnotationIsServerOwned(t *testing.T) {
	src, dst := namespace(t, "grant-src"), namespace(t, "grant-dst")
	createClaim(t, "disk", src, "1Gi", corev1.PersistentVolumeFilesystem, "")
	const forged = "v1.key-1.e30.AAAA"
	withGrant := func(manifest string) string {
		return strings.Replace(manifest, "metadata:\n", "metadata:\n  annotations:\n    "+cloneauth.GrantAnnotation+": "+forged+"\n", 1)
	}

	// Not a clone: dropped.
	out, err := kubectlIn(t, withGrant(dataVolumeYAML("blank", dst)), "create", "-f", "-")
	assert.NilError(t, err, out)
	_, has := storedDataVolume(t, "blank", dst).Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !has, "a client's grant was stored")

	// An allowed clone (the admin): replaced by the server's.
	out, err = kubectlIn(t, withGrant(cloneYAML("copy", dst, src, "disk", "2Gi")), "create", "-f", "-")
	assert.NilError(t, err, out)
	assertGrantVerifies(t, "copy", dst, src, "disk")
	stored := storedDataVolume(t, "copy", dst).Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, stored != forged)

	// Updates keep the stored value, whatever they say.
	kubectl(t, "annotate", "--overwrite", "dv", "copy", "-n", dst, cloneauth.GrantAnnotation+"="+forged)
	kubectl(t, "patch", "dv", "copy", "-n", dst, "--type=merge", "-p", `{"metadata":{"annotations":{"`+cloneauth.GrantAnnotation+`":"`+forged+`","team":"storage"}}}`)
	kubectl(t, "annotate", "dv", "copy", "-n", dst, cloneauth.GrantAnnotation+"-")
	after := storedDataVolume(t, "copy", dst)
	assert.Check(t, is.Equal(after.Annotations[cloneauth.GrantAnnotation], stored))
	assert.Check(t, is.Equal(after.Annotations["team"], "storage"), "the rest of the update applies")
	assertGrantVerifies(t, "copy", dst, src, "disk")

	kubectl(t, "annotate", "dv", "blank", "-n", dst, cloneauth.GrantAnnotation+"="+forged)
	_, has = storedDataVolume(t, "blank", dst).Annotations[cloneauth.GrantAnnotation]
	assert.Check(t, !has, "an update added a grant")
}
