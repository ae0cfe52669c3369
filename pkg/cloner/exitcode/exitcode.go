// Package exitcode is the contract between datavolume-cloner and the
// controller that runs it as a Kubernetes Job: what each exit code means,
// and the one-line JSON summary every command writes to its termination
// log (the container's terminationMessagePath) when it exits.
//
// It imports nothing but the standard library, so the controller can use
// it without pulling in the cloner.
//
// Exit codes, for the Job's podFailurePolicy and the controller:
//
//	0 Success       the command did its job
//	1 Retryable     network errors, timeouts, HTTP errors (404 and 401/403
//	                included, as CDI retries them): run the pod again, with backoff
//	2 Usage         bad flags or arguments: permanent
//	3 Permanent     the data can never be imported as asked: checksum
//	                mismatch, image larger than the target, unsafe content,
//	                unsupported format for the content type, a qcow2 image
//	                that fails its check, archive content for a block volume
//	4 NeedsScratch  the import cannot proceed without --scratch (a qcow2
//	                from a server without Range requests, a compressed
//	                qcow2, a qcow2 from a registry): rerun the Job with a
//	                scratch volume; this is not a failure of the import
//
// The termination message is one line of JSON, at most MaxMessageBytes:
//
//	{"outcome":"Failed","exitCode":3,"reason":"ImageTooLarge","message":"...","bytes":0,"targetSize":1073741824}
//
// Its message is written for the user (it becomes the DataVolume's
// condition and event message): HTTP failures name the server's host and
// the status, a too-large image names both sizes. It never holds
// credentials, header values or URL query strings.
package exitcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Exit codes of datavolume-cloner.
const (
	Success      = 0
	Retryable    = 1
	Usage        = 2
	Permanent    = 3
	NeedsScratch = 4
)

// IsPermanent tells whether running the same Job again cannot help: the
// DataVolume fails at once.
func IsPermanent(code int) bool { return code == Usage || code == Permanent }

// Outcome says how the command ended.
type Outcome string

// Outcomes.
const (
	Succeeded Outcome = "Succeeded"
	Failed    Outcome = "Failed"
)

// Reason is a machine-readable cause, one of the constants below.
type Reason string

// Reasons, each with the exit code it comes with (see ExitCode).
const (
	ReasonCompleted         Reason = "Completed"         // 0
	ReasonChecksumMismatch  Reason = "ChecksumMismatch"  // 3: the download does not match --checksum
	ReasonImageTooLarge     Reason = "ImageTooLarge"     // 3: the image's (virtual) size exceeds the target
	ReasonUnsafeContent     Reason = "UnsafeContent"     // 3: tar entries leaving the volume, qcow2 backing or data files
	ReasonUnsupportedFormat Reason = "UnsupportedFormat" // 3: wrong format for the content type, a qcow2 failing its check, archive into block
	ReasonNeedsScratch      Reason = "NeedsScratch"      // 4: rerun with --scratch
	ReasonHTTPError         Reason = "HTTPError"         // 1: an HTTP error status other than 401/403/404, too many redirects
	ReasonNotFound          Reason = "NotFound"          // 1: HTTP 404 (or a registry's "unknown manifest")
	ReasonUnauthorized      Reason = "Unauthorized"      // 1: HTTP 401 or 403: credentials missing or refused
	ReasonTransferFailed    Reason = "TransferFailed"    // 1: any other failure: network, timeouts, TLS, I/O
	ReasonInvalidArguments  Reason = "InvalidArguments"  // 2: bad flags or unreadable inputs named by them
)

// Reasons lists every reason, in the order above.
var Reasons = []Reason{
	ReasonCompleted, ReasonChecksumMismatch, ReasonImageTooLarge, ReasonUnsafeContent, ReasonUnsupportedFormat,
	ReasonNeedsScratch, ReasonHTTPError, ReasonNotFound, ReasonUnauthorized, ReasonTransferFailed, ReasonInvalidArguments,
}

// ExitCode is the exit code a reason comes with; an unknown reason is
// taken as retryable.
func (r Reason) ExitCode() int {
	switch r {
	case ReasonCompleted:
		return Success
	case ReasonChecksumMismatch, ReasonImageTooLarge, ReasonUnsafeContent, ReasonUnsupportedFormat:
		return Permanent
	case ReasonNeedsScratch:
		return NeedsScratch
	case ReasonInvalidArguments:
		return Usage
	}
	return Retryable
}

// MaxMessageBytes is the most the kubelet reads of a termination message.
const MaxMessageBytes = 4096

// DefaultTerminationLog is where Kubernetes expects the termination
// message unless the container says otherwise.
const DefaultTerminationLog = "/dev/termination-log"

// Termination is the summary a command writes when it exits.
type Termination struct {
	Outcome  Outcome `json:"outcome"`
	ExitCode int     `json:"exitCode"`
	Reason   Reason  `json:"reason"`
	// Message is for the user: what happened and what to do about it.
	Message string `json:"message"`
	// Bytes is what the command moved: bytes read from the source for an
	// import or upload, data bytes copied for a clone, 0 for blank.
	Bytes int64 `json:"bytes"`
	// TargetSize is the usable size of the target in bytes as the command
	// saw it (--target-size, else the disk image's or device's size), 0
	// when unknown or when the command has no target.
	TargetSize int64 `json:"targetSize"`
}

// Encode returns the termination message: one line of JSON ending in a
// newline, at most MaxMessageBytes long (the message is shortened, on a
// character boundary, to fit).
func (t Termination) Encode() []byte {
	t.Message = strings.Join(strings.Fields(t.Message), " ")
	for {
		b, err := json.Marshal(t)
		if err != nil { // cannot happen for these field types
			b = []byte(`{"outcome":"Failed","exitCode":1,"reason":"TransferFailed","message":"encoding the termination message failed"}`)
		}
		b = append(b, '\n')
		if len(b) <= MaxMessageBytes {
			return b
		}
		// Escaping can make a byte of the message up to six bytes of JSON.
		over := (len(b) - MaxMessageBytes + 5) / 6
		t.Message = truncate(t.Message, max(len(t.Message)-over-len("..."), 0)) + "..."
	}
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Parse decodes a termination message. It accepts surrounding white space
// and unknown fields, and requires a known outcome. A reason this version
// does not know is kept as it is: compare with the constants.
func Parse(msg string) (Termination, error) {
	var t Termination
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return t, errors.New("termination message is empty")
	}
	if err := json.Unmarshal([]byte(msg), &t); err != nil {
		return Termination{}, fmt.Errorf("termination message is not the cloner's JSON: %w", err)
	}
	switch t.Outcome {
	case Succeeded, Failed:
	default:
		return Termination{}, fmt.Errorf("termination message has outcome %q, want Succeeded or Failed", t.Outcome)
	}
	return t, nil
}
