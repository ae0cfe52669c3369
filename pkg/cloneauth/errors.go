package cloneauth

import "errors"

// Errors of clone authorization; test with errors.Is.
var (
	// ErrInvalidRequest: the request lacks what a cross-namespace check needs.
	ErrInvalidRequest = errors.New("invalid clone authorization request")
	// ErrCheckFailed: a SubjectAccessReview failed or timed out; the clone
	// is denied.
	ErrCheckFailed = errors.New("SubjectAccessReview failed")
	// ErrTooManyChecks: the requester had the most checks in flight allowed
	// already; the clone is refused for now, to be retried (429).
	ErrTooManyChecks = errors.New("too many clone checks in flight")
)

// Errors of grant verification and key handling; test with errors.Is.
var (
	ErrGrantMissing      = errors.New("clone grant missing")
	ErrGrantMalformed    = errors.New("clone grant malformed")
	ErrGrantUnknownKey   = errors.New("clone grant signed with an unknown key")
	ErrGrantBadSignature = errors.New("clone grant signature invalid")
	ErrGrantExpired      = errors.New("clone grant expired")
	ErrGrantNotYetValid  = errors.New("clone grant not yet valid")
	ErrGrantWrongTarget  = errors.New("clone grant is for another target")
	ErrGrantWrongSource  = errors.New("clone grant is for another source")
	ErrInvalidGrant      = errors.New("invalid clone grant")
	ErrInvalidKey        = errors.New("invalid grant key")
	ErrNoKeys            = errors.New("no grant keys")
)
