package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
	admissionv1 "k8s.io/api/admission/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// Run wired to a fake cluster: informers, the real clone authorizer asking
// SubjectAccessReviews, HTTPS with the files' certificate, readiness, and a
// clean stop.
func TestRunServesUntilCancelled(t *testing.T) {
	certFile, keyFile, certPEM := writeCertificate(t, t.TempDir(), "127.0.0.1")
	certificate, err := newServingCertificate(certFile, keyFile)
	assert.NilError(t, err)
	client := fake.NewClientset(webhooktest.BoundClaim("src", "disk", "2Gi"))
	client.PrependReactor("create", "subjectaccessreviews", allowServiceAccount("system:serviceaccount:target:default"))
	options := *NewOptions()
	options.BindAddress, options.Port, options.MetricsBindAddress = "127.0.0.1", freePort(t), ""
	config := &Config{
		options:     options,
		client:      client,
		cloneChecks: client,
		certificate: certificate,
	}

	ctx, cancel := context.WithCancel(logrContext(t))
	stopped := make(chan error, 1)
	go func() { stopped <- config.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-stopped:
			assert.NilError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
	}()

	roots := x509.NewCertPool()
	assert.Assert(t, roots.AppendCertsFromPEM(certPEM))
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	base := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(config.options.Port))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		resp, err := httpClient.Get(base + "/readyz")
		if err != nil {
			return poll.Continue("not serving yet: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return poll.Continue("readyz: %d", resp.StatusCode)
		}
		return poll.Success()
	}, poll.WithTimeout(20*time.Second), poll.WithDelay(50*time.Millisecond))

	t.Run("a DataVolume clone is sized from the informer's claim", func(t *testing.T) {
		resp := postReview(t, httpClient, base+webhook.MutateDataVolumesPath, endpointstest.DataVolumeReview(t))
		assert.Equal(t, string(resp.Patch), `[{"op":"add","path":"/spec/storage/resources/requests/storage","value":"2Gi"}]`)
	})
	t.Run("a VirtualMachine clone is allowed by SubjectAccessReview, and audited", func(t *testing.T) {
		resp := postReview(t, httpClient, base+webhook.ValidateVirtualMachinesPath, endpointstest.VirtualMachineReview(t))
		assert.Assert(t, resp.Allowed, "%+v", resp.Result)
		assert.DeepEqual(t, resp.AuditAnnotations, map[string]string{"decision": "allow", "reason": "RBAC: allowed by test",
			"source": "src/disk", "target": "target/root", "serviceaccount": "target/default"})
	})
}

func postReview(t *testing.T, client *http.Client, url string, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	assert.NilError(t, err)
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	assert.NilError(t, err)
	assert.Equal(t, resp.StatusCode, http.StatusOK, string(answer))
	var review admissionv1.AdmissionReview
	assert.NilError(t, json.Unmarshal(answer, &review))
	return review.Response
}

// allowServiceAccount answers SubjectAccessReviews: allowed for user only.
func allowServiceAccount(user string) k8stesting.ReactionFunc {
	return func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: review.Spec.User == user}
		if review.Status.Allowed {
			review.Status.Reason = "RBAC: allowed by test"
		}
		return true, review, nil
	}
}

// freePort is a port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

func logrContext(t *testing.T) context.Context {
	return logr.NewContext(context.Background(), testr.New(t))
}
