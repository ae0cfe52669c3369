package apiserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/audit"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/claims"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/plan"
)

// grantIssuer names this server in the grants it signs.
const grantIssuer = "datavolume-apiserver"

// anyOtherNamespace is the target of the clone check datavolumes/source
// answers: the permission is granted in the source namespace, whatever the
// target.
const anyOtherNamespace = "*"

// The clone checks' client limits. With client-go's defaults (5 requests a
// second, 10 at once) concurrent clone creates queued for the limiter, and
// past --clone-check-timeout were denied (issue 15). The limits are set at
// what kube-apiserver answers at most on a small machine (about 1900
// SubjectAccessReviews a second on 2 cores, measured), so that the checks go
// as fast as kube-apiserver answers them: a create costs far more than its
// review, and the creates run into their own limits first. They stay finite on
// purpose: kube-apiserver's priority and fairness puts all of this server's
// requests in one flow, and the limit bounds how much of a larger
// kube-apiserver one replica may spend on clone checks (a denied clone asks
// two reviews, and stores nothing). Within that flow, requesters share the
// checks through --clone-check-max-in-flight-per-user (issue 18).
const (
	DefaultCloneCheckQPS   float32 = 2000
	DefaultCloneCheckBurst int     = 4000
)

// cloneCheckClientConfig is base with the clone checks' own limits
// (cloneauth.ClientConfig).
func (o *Options) cloneCheckClientConfig(base *rest.Config) *rest.Config {
	return cloneauth.ClientConfig(base, o.CloneCheckQPS, o.CloneCheckBurst)
}

// cloneConfig builds the clone gate and the datavolumes/source describer on
// kube, the clone checks' client.
func (o *Options) cloneConfig(ctx context.Context, kube kubernetes.Interface, vms dynamic.Interface, claims corelisters.PersistentVolumeClaimLister, log logr.Logger) (ExtraConfig, error) {
	keys, err := cloneauth.WatchKeySet(ctx, o.CloneGrantKeys, cloneauth.DefaultReloadEvery, log.WithName("grant-keys"))
	if err != nil {
		return ExtraConfig{}, fmt.Errorf("loading clone grant keys: %w", err)
	}
	authorizer := o.cloneAuthorizer(kube.AuthorizationV1().SubjectAccessReviews(), log)
	gate := &cloneGate{authorizer: authorizer, keys: keys, ttl: o.CloneGrantTTL, now: time.Now,
		vmTemplates: newVMTemplateJudge(o.VMTemplateCreator, vms),
		sourceUID:   claimUID(claims)}
	return ExtraConfig{
		OnCreate: gate.onCreate,
		Sources:  &sourceDescriber{kube: kube, authorizer: authorizer},
	}, nil
}

// cloneAuthorizer is the clone checks' authorizer with the options' time
// limit, cache and per-requester bound.
func (o *Options) cloneAuthorizer(reviews authorizationv1client.SubjectAccessReviewInterface, log logr.Logger) *cloneauth.Authorizer {
	return cloneauth.NewAuthorizer(reviews,
		cloneauth.WithTimeout(o.CloneCheckTimeout), cloneauth.WithLogger(log.WithName("clone")),
		cloneauth.WithCache(o.CloneCheckCacheAllowedTTL, o.CloneCheckCacheDeniedTTL),
		cloneauth.WithMaxInFlightPerRequester(o.CloneCheckMaxInFlightPerUser, cloneauth.DefaultInFlightWait))
}

// cloneGate authorizes cross-namespace clones at create and stamps the
// allowed ones with a signed grant.
type cloneGate struct {
	authorizer *cloneauth.Authorizer
	keys       grantSigner
	ttl        time.Duration
	now        func() time.Time
	// vmTemplates judges the DataVolumes of VMs' templates; nil, off.
	vmTemplates *vmTemplateJudge
	// sourceUID finds the source claim's UID to bind into the grant; ""
	// when it does not exist (yet): the controller binds the one it finds.
	sourceUID func(ctx context.Context, namespace, name string) types.UID
}

// grantSigner signs grants: *cloneauth.KeySet, or one that reloads.
type grantSigner interface {
	Sign(cloneauth.Grant) (string, error)
}

// claimUID reads a claim's UID from the cache; "" while the cache does not
// have it (the controller then binds the claim it finds).
func claimUID(claims corelisters.PersistentVolumeClaimLister) func(ctx context.Context, namespace, name string) types.UID {
	return func(_ context.Context, namespace, name string) types.UID {
		claim, err := claims.PersistentVolumeClaims(namespace).Get(name)
		if err != nil {
			return ""
		}
		return claim.UID
	}
}

func (g *cloneGate) onCreate(ctx context.Context, dv *cdi.DataVolume, _ *metav1.CreateOptions) error {
	// A grant only ever comes from this check: drop whatever the client sent.
	delete(dv.Annotations, cloneauth.GrantAnnotation)

	// Same-namespace clones need no more than "create datavolumes", which the
	// delegated authorizer has already checked. A clone without a source
	// name is invalid: validation, which runs next, refuses it with 422 and
	// every other problem.
	p := plan.For(dv.Namespace, &dv.Spec)
	if !p.IsCrossNamespace(dv.Namespace) {
		return nil
	}
	requester, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewForbidden(cdi.Resource("datavolumes"), dv.Name, fmt.Errorf("no authenticated user in the request"))
	}
	requester, err := g.vmTemplates.requesterFor(ctx, dv, p, requester)
	if err != nil {
		return err
	}
	req := cloneauth.Request{
		User:            requester,
		SourceNamespace: p.CloneSource.Namespace,
		SourceName:      p.CloneSource.Name,
		TargetNamespace: dv.Namespace,
		TargetName:      dv.Name,
	}
	decision, err := g.authorizer.Authorize(ctx, req)
	for key, value := range decision.AuditAnnotations(req) {
		audit.AddAuditAnnotation(ctx, key, value)
	}
	if denial := cloneauth.DenialError(req, decision, err); denial != nil {
		return denial
	}

	grant := cloneauth.NewGrant(req, dv.UID, grantIssuer, g.now(), g.ttl)
	if g.sourceUID != nil {
		grant.SourceUID = g.sourceUID(ctx, req.SourceNamespace, req.SourceName)
	}
	token, err := g.keys.Sign(grant)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("signing clone grant: %w", err))
	}
	if dv.Annotations == nil {
		dv.Annotations = map[string]string{}
	}
	dv.Annotations[cloneauth.GrantAnnotation] = token
	return nil
}

// sourceDescriber answers datavolumes/source from the core API.
type sourceDescriber struct {
	kube       kubernetes.Interface
	authorizer *cloneauth.Authorizer
}

func (s *sourceDescriber) DescribeSource(ctx context.Context, namespace, name string) (*cdi.CloneSource, error) {
	pvc, err := s.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		// NotFound and Forbidden pass through as they are.
		return nil, err
	}
	podList, err := s.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods using PersistentVolumeClaim %s/%s: %w", namespace, name, err)
	}
	pods := make([]*corev1.Pod, len(podList.Items))
	for i := range podList.Items {
		pods[i] = &podList.Items[i]
	}

	out := &cdi.CloneSource{
		ObjectMeta: metav1.ObjectMeta{Name: pvc.Name, Namespace: pvc.Namespace, UID: pvc.UID, CreationTimestamp: pvc.CreationTimestamp},
		Status: cdi.CloneSourceStatus{
			Capacity:   claims.Size(pvc),
			VolumeMode: claims.VolumeMode(pvc),
			Phase:      pvc.Status.Phase,
		},
	}
	if pvc.Spec.StorageClassName != nil {
		out.Status.StorageClassName = *pvc.Spec.StorageClassName
	}
	out.Status.UsedBy = claims.PodsUsing(pods, name)
	out.Status.InUse = len(out.Status.UsedBy) > 0

	if requester, ok := genericapirequest.UserFrom(ctx); ok {
		req := cloneauth.Request{User: requester, SourceNamespace: namespace, SourceName: name, TargetNamespace: anyOtherNamespace}
		decision, err := s.authorizer.Authorize(ctx, req)
		if errors.Is(err, cloneauth.ErrTooManyChecks) {
			// Not asked, so neither allowed nor denied: retry.
			return nil, cloneauth.TooManyChecks(err)
		}
		out.Status.Allowed = err == nil && decision.Allowed
		out.Status.Reason = decision.Reason
		if err != nil {
			out.Status.Reason = err.Error()
		} else if !decision.Allowed && decision.Missing != "" {
			out.Status.Reason = fmt.Sprintf("missing permission %s (%s)", decision.Missing, decision.Reason)
		}
	}
	return out, nil
}
