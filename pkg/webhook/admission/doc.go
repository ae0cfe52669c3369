// Package admission turns HTTP requests carrying an AdmissionReview
// (admission.k8s.io/v1 or v1beta1) into calls of a Handler, and the
// Handler's Response back into an AdmissionReview of the same version.
//
// Requests that are not a review at all get an HTTP error: an empty or
// malformed body 400, a body over MaxRequestBytes 413, a content type other
// than JSON 415. A Handler that panics is answered with a 500 inside the
// review, never a crashed server.
package admission
