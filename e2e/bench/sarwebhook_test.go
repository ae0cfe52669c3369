//go:build e2e

package bench

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// sarWebhook is CDI's shape of a clone check: a validating webhook, on
// loopback here, that asks kube-apiserver one SubjectAccessReview per
// create (create cdi.kubevirt.io datavolumes/source on the source claim, for
// the requesting user) and allows or denies by it, as a ServiceAccount.
// Real CDI asks more. It is
// registered for the bench.example.com DataVolumes of one namespace.
type sarWebhook struct {
	server  *httptest.Server
	reviews *kubernetes.Clientset
	calls   atomic.Int64
	config  string
}

const sarWebhookLabel = "bench.datavolume.io/sar-webhook"

// sarWebhookAccount is who the webhook asks its reviews as: a ServiceAccount
// allowed to (system:auth-delegator), as CDI's webhook and
// datavolume-apiserver are, so that both paths' reviews take the same way
// through kube-apiserver (token authentication, priority and fairness).
const sarWebhookAccount = "bench-cdi-webhook"

// serviceAccountConfig makes the ServiceAccount name in the default
// namespace, lets it create SubjectAccessReviews, and returns a client
// configuration with a token of it.
func serviceAccountConfig(ctx context.Context, name string) (*rest.Config, error) {
	manifest := fmt.Sprintf(`{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":%q,"namespace":"default"}}
{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":%q},
 "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"system:auth-delegator"},
 "subjects":[{"kind":"ServiceAccount","name":%q,"namespace":"default"}]}`, name, name, name)
	if _, err := cluster.Kubectl(ctx, manifest, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	token, err := cluster.Kubectl(ctx, "", "create", "token", name, "-n", "default", "--duration=2h")
	if err != nil {
		return nil, err
	}
	admin, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return &rest.Config{
		Host:            admin.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData, CAFile: admin.CAFile},
		BearerToken:     strings.TrimSpace(token),
	}, nil
}

func startSARWebhook(ctx context.Context, ns string) (_ *sarWebhook, err error) {
	rc, err := serviceAccountConfig(ctx, sarWebhookAccount)
	if err != nil {
		return nil, err
	}
	// The baseline's own client is not what is compared: no limit on it.
	rc.QPS, rc.Burst = -1, 0
	rc.Timeout = 10 * time.Second
	w := &sarWebhook{config: "validatingwebhookconfiguration/bench-sar"}
	if w.reviews, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	w.server = httptest.NewTLSServer(http.HandlerFunc(w.serve))
	defer func() {
		if err != nil {
			w.server.Close()
		}
	}()
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.server.Certificate().Raw})
	config := map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1",
		"kind":       "ValidatingWebhookConfiguration",
		"metadata":   map[string]any{"name": "bench-sar"},
		"webhooks": []any{map[string]any{
			"name":                    "sar.bench.example.com",
			"admissionReviewVersions": []any{"v1"},
			"sideEffects":             "None",
			"failurePolicy":           "Fail",
			"timeoutSeconds":          10,
			"clientConfig":            map[string]any{"url": w.server.URL + "/validate", "caBundle": caBundle},
			"namespaceSelector":       map[string]any{"matchLabels": map[string]any{sarWebhookLabel: "true"}},
			"rules": []any{map[string]any{
				"apiGroups": []any{"bench.example.com"}, "apiVersions": []any{"v1beta1"},
				"resources": []any{"datavolumes"}, "operations": []any{"CREATE"}, "scope": "Namespaced",
			}},
		}},
	}
	manifest, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	if _, err = cluster.Kubectl(ctx, "", "label", "namespace", ns, sarWebhookLabel+"=true"); err != nil {
		return nil, err
	}
	if _, err = cluster.Kubectl(ctx, string(manifest), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	return w, nil
}

// serve answers one AdmissionReview by one SubjectAccessReview.
func (w *sarWebhook) serve(rw http.ResponseWriter, r *http.Request) {
	w.calls.Add(1)
	var review admissionv1.AdmissionReview
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err != nil || review.Request == nil {
		http.Error(rw, fmt.Sprintf("bad AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	req := review.Request
	var dv struct {
		Spec struct {
			Source struct {
				PVC *struct{ Namespace, Name string } `json:"pvc"`
			} `json:"source"`
		} `json:"spec"`
	}
	response := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if err := json.Unmarshal(req.Object.Raw, &dv); err != nil {
		response.Allowed, response.Result = false, &metav1.Status{Code: http.StatusBadRequest, Message: err.Error()}
	} else if pvc := dv.Spec.Source.PVC; pvc != nil {
		extra := map[string]authorizationv1.ExtraValue{}
		for k, v := range req.UserInfo.Extra {
			extra[k] = authorizationv1.ExtraValue(v)
		}
		sar, err := w.reviews.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User: req.UserInfo.Username, UID: req.UserInfo.UID, Groups: req.UserInfo.Groups, Extra: extra,
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: pvc.Namespace, Verb: "create", Group: "cdi.kubevirt.io",
					Resource: "datavolumes", Subresource: "source", Name: pvc.Name,
				},
			},
		}, metav1.CreateOptions{})
		switch {
		case err != nil:
			response.Allowed, response.Result = false, &metav1.Status{Code: http.StatusInternalServerError, Message: err.Error()}
		case !sar.Status.Allowed:
			response.Allowed, response.Result = false, &metav1.Status{Code: http.StatusForbidden, Message: "clone not allowed: " + sar.Status.Reason}
		}
	}
	review.Request, review.Response = nil, response
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(&review)
}

// waitCalled waits until kube-apiserver calls the webhook for p's creates
// and it admits them.
func (w *sarWebhook) waitCalled(ctx context.Context, client dynamic.Interface, p *path) error {
	before := w.calls.Load()
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = client.Resource(p.resource).Namespace(p.ns).Create(ctx, p.newObject("bench-probe"), dryRun)
		return last == nil && w.calls.Load() > before, nil
	})
	if err != nil {
		return fmt.Errorf("%s path: the SubjectAccessReview webhook does not admit (last answer: %v): %w", p.name, last, err)
	}
	return nil
}

func (w *sarWebhook) stop(ctx context.Context) {
	_, _ = cluster.Kubectl(ctx, "", "delete", w.config, "--ignore-not-found")
	w.server.Close()
}
