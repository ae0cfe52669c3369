package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxRequestBytes caps a review's body, as controller-runtime does: an
// object is at most ~3 MiB in etcd and a review of an update carries two.
const MaxRequestBytes = 7 << 20

// Webhook serves one Handler over HTTP.
type Webhook struct {
	Handler Handler
	Log     logr.Logger
}

var _ http.Handler = (*Webhook)(nil)

// ServeHTTP answers one AdmissionReview.
func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// The handler's own panics are answered inside the review; this
		// catches the plumbing's, so the server never goes down with a request.
		if p := recover(); p != nil {
			wh.Log.Error(fmt.Errorf("panic: %v", p), "Admission plumbing panicked", "stack", string(debug.Stack()))
			writeHTTPError(w, http.StatusInternalServerError, errors.New("internal error in the admission webhook; see its log"))
		}
	}()

	if r.Method != http.MethodPost {
		writeHTTPError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s: an AdmissionReview is POSTed", r.Method))
		return
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		writeHTTPError(w, http.StatusUnsupportedMediaType, err)
		return
	}
	body, code, err := readBody(r)
	if err != nil {
		writeHTTPError(w, code, err)
		return
	}
	typeMeta, req, err := decodeReview(body)
	if err != nil {
		writeHTTPError(w, http.StatusBadRequest, err)
		return
	}

	log := wh.Log.WithValues("uid", req.UID, "kind", req.Kind.Kind, "namespace", req.Namespace, "name", req.Name, "operation", req.Operation)
	resp := wh.handle(logr.NewContext(r.Context(), log), log, req)
	out, err := resp.complete(req)
	if err != nil {
		log.Error(err, "Completing the admission response")
		out, _ = Errored(http.StatusInternalServerError, err).complete(req)
	}
	logDecision(log, out.Allowed, out.Result)
	writeJSON(w, http.StatusOK, encodeReview(typeMeta, out))
}

// handle calls the Handler, turning a panic into a 500 inside the review.
func (wh *Webhook) handle(ctx context.Context, log logr.Logger, req Request) (resp Response) {
	defer func() {
		if p := recover(); p != nil {
			log.Error(fmt.Errorf("panic: %v", p), "Admission handler panicked", "stack", string(debug.Stack()))
			resp = Errored(http.StatusInternalServerError,
				fmt.Errorf("internal error in the admission webhook while deciding %s %s/%s; see its log", req.Kind.Kind, req.Namespace, req.Name))
		}
	}()
	return wh.Handler.Handle(ctx, req)
}

// checkContentType accepts JSON only: the API server sends nothing else.
func checkContentType(contentType string) error {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "application/json" {
		return fmt.Errorf("content type %q: an AdmissionReview must be sent as application/json", contentType)
	}
	return nil
}

// readBody reads at most MaxRequestBytes; the code says why it failed.
func readBody(r *http.Request) ([]byte, int, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, http.StatusBadRequest, errors.New("the request body is empty; expected an AdmissionReview")
	}
	defer r.Body.Close()
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	switch {
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	case len(body) > MaxRequestBytes:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the request body is larger than %d bytes", MaxRequestBytes)
	case len(body) == 0:
		return nil, http.StatusBadRequest, errors.New("the request body is empty; expected an AdmissionReview")
	}
	return body, http.StatusOK, nil
}

func logDecision(log logr.Logger, allowed bool, result *metav1.Status) {
	if result == nil {
		log.V(2).Info("Admission decided", "allowed", allowed)
		return
	}
	log.V(2).Info("Admission decided", "allowed", allowed, "code", result.Code, "message", result.Message)
}

// writeHTTPError answers a request that is not a readable review with an
// HTTP error carrying a Status, as the API server would.
func writeHTTPError(w http.ResponseWriter, code int, err error) {
	status := Errored(int32(code), err).Result
	status.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	writeJSON(w, code, status)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Nothing we encode can fail; answer plainly if it ever does.
		http.Error(w, "encoding the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
