package server

import (
	"encoding/json"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/admission"
	webhookaccessors "k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/generic"
	webhookrequest "k8s.io/apiserver/pkg/admission/plugin/webhook/request"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/datavolume/datavolume/pkg/webhook"
	"github.com/datavolume/datavolume/pkg/webhook/endpoints"
	"github.com/datavolume/datavolume/pkg/webhook/internal/endpointstest"
	"github.com/datavolume/datavolume/pkg/webhook/internal/webhooktest"
)

// The reviews are built by the API server's own code (as kube-apiserver and
// datavolume-apiserver send them), and the answers checked by the code
// that reads them: UID, version, patch rules, audit annotation keys.
func TestAPIServerAcceptsTheAnswers(t *testing.T) {
	handler := endpoints.New(endpointstest.Dependencies(t, func() bool { return true }))
	dataVolumes := schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}
	virtualMachines := schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
	tests := []struct {
		name, path, webhookName string
		mutating                bool
		resource                schema.GroupVersionResource
		kind                    string
		manifest                string
		wantPatch               bool
		wantAnnotations         int
		wantDenied              bool
	}{
		{"mutating a DataVolume", webhook.MutateDataVolumesPath, "datavolumes.mutate.cdi.kubevirt.io", true,
			dataVolumes, "DataVolume", endpointstest.CloneDataVolume, true, 0, false},
		{"validating a DataVolume", webhook.ValidateDataVolumesPath, "datavolumes.validate.cdi.kubevirt.io", false,
			dataVolumes, "DataVolume", endpointstest.CloneDataVolume, false, 0, false},
		{"validating a VirtualMachine", webhook.ValidateVirtualMachinesPath, "clone.cdi.kubevirt.io", false,
			virtualMachines, "VirtualMachine", endpointstest.CloneVirtualMachine, false, 5, false},
		{"refusing a VirtualMachine", webhook.ValidateVirtualMachinesPath, "clone.cdi.kubevirt.io", false,
			virtualMachines, "VirtualMachine", strings.ReplaceAll(endpointstest.CloneVirtualMachine, "name: disk", "name: busy"), false, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			assert.NilError(t, obj.UnmarshalJSON(webhooktest.JSON(t, tt.manifest)))
			kind := tt.resource.GroupVersion().WithKind(tt.kind)
			attributes := admission.NewAttributesRecord(obj, nil, kind, "target", obj.GetName(), tt.resource, "",
				admission.Create, &metav1.CreateOptions{}, false, &user.DefaultInfo{Name: "alice"})
			versioned := &admission.VersionedAttributes{Attributes: attributes, VersionedKind: kind, VersionedObject: admission.NewLazyObject(obj)}
			uid, request, response, err := webhookrequest.CreateAdmissionObjects(versioned,
				&generic.WebhookInvocation{Webhook: accessor(tt.webhookName, tt.mutating), Resource: tt.resource, Kind: kind})
			assert.NilError(t, err)

			// Encoded as the API server's REST client does, with apiVersion and kind.
			body, err := runtime.Encode(reviewCodec, request)
			assert.NilError(t, err)
			rec := endpointstest.Post(handler, tt.path, body)
			assert.NilError(t, json.Unmarshal(rec.Body.Bytes(), response))
			result, err := webhookrequest.VerifyAdmissionResponse(uid, tt.mutating, response)
			assert.NilError(t, err)

			assert.Equal(t, result.Allowed, !tt.wantDenied, "%+v", result.Result)
			assert.Equal(t, len(result.Patch) > 0, tt.wantPatch)
			if tt.wantPatch {
				assert.Equal(t, result.PatchType, admissionv1.PatchTypeJSONPatch)
			}
			assert.Equal(t, len(result.AuditAnnotations), tt.wantAnnotations)
			for key := range result.AuditAnnotations {
				// What the API server does with each key before recording it.
				assert.DeepEqual(t, validation.IsQualifiedName(tt.webhookName+"/"+key), []string(nil))
			}
		})
	}
}

// reviewCodec encodes AdmissionReviews as the API server sends them.
var reviewCodec = func() runtime.Codec {
	scheme := runtime.NewScheme()
	utilruntime.Must(admissionv1.AddToScheme(scheme))
	return serializer.NewCodecFactory(scheme).LegacyCodec(admissionv1.SchemeGroupVersion)
}()

func accessor(name string, mutating bool) webhookaccessors.WebhookAccessor {
	none := admissionregistrationv1.SideEffectClassNone
	if mutating {
		return webhookaccessors.NewMutatingWebhookAccessor("uid", "datavolume-webhook", &admissionregistrationv1.MutatingWebhook{
			Name: name, AdmissionReviewVersions: []string{"v1"}, SideEffects: &none})
	}
	return webhookaccessors.NewValidatingWebhookAccessor("uid", "datavolume-webhook", &admissionregistrationv1.ValidatingWebhook{
		Name: name, AdmissionReviewVersions: []string{"v1"}, SideEffects: &none})
}
