//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// With the marker CRD datavolumes.cdi.kubevirt.io present (KubeVirt looks
// for it), every request still goes to datavolume-apiserver: kubectl,
// discovery and watches; kube-apiserver's etcd holds no DataVolume.
func TestDataVolumeCRDMarkerServesNothing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// The marker is there and established, as KubeVirt's informer sees it.
	assert.Equal(t, kubectl(t, "get", "crd", "datavolumes.cdi.kubevirt.io", "-o",
		`jsonpath={.status.conditions[?(@.type=="Established")].status}`), "True")
	// The APIServices stay ours.
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		assert.Check(t, is.Equal(kubectl(t, "get", "apiservice", version+".cdi.kubevirt.io", "-o", "jsonpath={.spec.service.name}"), "datavolume-apiserver"))
	}
	// Discovery names our resource with its subresources (a CRD has no
	// datavolumes/source).
	resources := kubectl(t, "get", "--raw", "/apis/cdi.kubevirt.io/v1beta1")
	assert.Check(t, is.Contains(resources, `"datavolumes/source"`))
	// kubectl explain reads our OpenAPI, not the marker's open schema.
	assert.Check(t, is.Contains(kubectl(t, "explain", "datavolume.spec.source.pvc"), "Namespace of the source claim"))

	ns := namespace(t, "marker")
	// A watch, as KubeVirt's DataVolume informer opens one.
	w, err := cdi(t, "").CdiV1beta1().DataVolumes(ns).Watch(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	defer w.Stop()

	// Our validation answers (the marker's schema takes anything).
	out, err := kubectlIn(t, `apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: bad
spec:
  source:
    http:
      url: ftp://example.invalid/disk.img
  pvc:
    resources:
      requests:
        storage: 1Mi
`, "create", "-n", ns, "-f", "-")
	assert.Assert(t, err != nil, out)
	assert.Check(t, is.Contains(err.Error()+out, "spec.source.http.url"))
	create(t, ns, cloneYAML("marked", ns, ns, "missing", claimSize))
	select {
	case e := <-w.ResultChan():
		assert.Check(t, is.Equal(e.Type, watch.Added))
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event for the created DataVolume")
	}
	assert.Check(t, is.Contains(kubectl(t, "get", "dv", "-n", ns), "marked"))

	// Nothing in kube-apiserver's etcd under the group but the CRD object.
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{cluster.KubeEtcdURL}, DialTimeout: 10 * time.Second})
	assert.NilError(t, err)
	defer etcd.Close()
	got, err := etcd.Get(context.Background(), "/registry/cdi.kubevirt.io/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	assert.NilError(t, err)
	var keys []string
	for _, kv := range got.Kvs {
		keys = append(keys, string(kv.Key))
	}
	assert.Check(t, is.Len(keys, 0), "stored in kube-apiserver's etcd: %s", strings.Join(keys, ", "))
}
