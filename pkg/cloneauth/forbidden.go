package cloneauth

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var dataVolumes = schema.GroupResource{Group: DataVolumesGroup, Resource: DataVolumesResource}

// Forbidden is the 403 for a denied clone. Its message names the user, the
// source claim and the permission to ask an administrator for.
func Forbidden(req Request, d Decision) error {
	ns := req.SourceNamespace
	message := fmt.Sprintf(
		"user %q may not clone PersistentVolumeClaim %q into namespace %q: "+
			"missing permission create %s (%s) on %q in namespace %q (or create pods in %q); "+
			"ask an administrator for a RoleBinding in %q to a ClusterRole granting %s",
		req.userName(), req.source(), req.TargetNamespace,
		ViaDataVolumesSource, DataVolumesGroup, req.SourceName, ns, ns,
		ns, ViaDataVolumesSource)
	if d.Reason != "" {
		message += fmt.Sprintf(" (authorizer: %s)", d.Reason)
	}
	return apierrors.NewForbidden(dataVolumes, req.TargetName, errors.New(message))
}

// ForbiddenCheckFailed is the 403 for a clone whose authorization check
// failed: the clone is denied rather than allowed unchecked. It tells the
// requester no more than the error's text.
func ForbiddenCheckFailed(req Request, err error) error {
	message := fmt.Sprintf(
		"could not check whether user %q may clone PersistentVolumeClaim %q into namespace %q, so the clone is denied: %v",
		req.userName(), req.source(), req.TargetNamespace, err)
	return apierrors.NewForbidden(dataVolumes, req.TargetName, errors.New(message))
}

// TooManyChecks is the 429 for a clone refused by the per-requester bound
// (ErrTooManyChecks), with Retry-After. Its message is err's, which names
// the requester and its limit: nothing about the source, which was not
// checked.
func TooManyChecks(err error) *apierrors.StatusError {
	return apierrors.NewTooManyRequests(err.Error(), RetryAfterSeconds)
}

// DenialError turns the result of Authorize into the error to return to the
// requester: nil only for an allowed clone checked without error.
func DenialError(req Request, d Decision, err error) error {
	switch {
	case errors.Is(err, ErrTooManyChecks):
		return TooManyChecks(err)
	case err != nil:
		return ForbiddenCheckFailed(req, err)
	case !d.Allowed:
		return Forbidden(req, d)
	}
	return nil
}
