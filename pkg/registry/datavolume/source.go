package datavolume

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

// SourceDescriber tells what a PersistentVolumeClaim is as a clone source,
// for the user in ctx.
type SourceDescriber interface {
	DescribeSource(ctx context.Context, namespace, name string) (*cdi.CloneSource, error)
}

// SourceREST serves GET namespaces/<ns>/datavolumes/<pvc>/source. The name is
// a PersistentVolumeClaim's, not a DataVolume's: this is where a would-be
// cloner asks what a claim is and whether they may clone it. Reading it takes
// "get" on datavolumes/source, checked by the delegated authorizer.
type SourceREST struct {
	sources SourceDescriber
}

var (
	_ rest.Getter  = &SourceREST{}
	_ rest.Storage = &SourceREST{}
	_ rest.Scoper  = &SourceREST{}
)

// New returns an empty CloneSource.
func (r *SourceREST) New() runtime.Object { return &cdi.CloneSource{} }

// Destroy does nothing: nothing is stored.
func (r *SourceREST) Destroy() {}

// NamespaceScoped is true: a source claim lives in a namespace.
func (r *SourceREST) NamespaceScoped() bool { return true }

// Get describes the claim named name in the request's namespace.
func (r *SourceREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	namespace, ok := genericapirequest.NamespaceFrom(ctx)
	if !ok || namespace == "" {
		return nil, fmt.Errorf("datavolumes/source needs a namespace")
	}
	if r.sources == nil {
		return nil, fmt.Errorf("datavolumes/source is not configured on this server")
	}
	return r.sources.DescribeSource(ctx, namespace, name)
}
