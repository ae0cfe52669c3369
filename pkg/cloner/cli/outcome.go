package cli

import (
	"archive/tar"
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/checksum"
	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	"github.com/datavolume/datavolume/pkg/cloner/format"
	"github.com/datavolume/datavolume/pkg/cloner/httpsource"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/qcow2"
	"github.com/datavolume/datavolume/pkg/cloner/registry"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// invalidArgsError is a problem with the invocation, or with an input a
// flag names (a malformed header in a mounted Secret): running the same
// Job again cannot help.
type invalidArgsError struct{ err error }

func (e *invalidArgsError) Error() string { return e.err.Error() }
func (e *invalidArgsError) Unwrap() error { return e.err }

func invalidArgs(err error) error { return &invalidArgsError{err} }

// errArchiveIntoBlock is archive content for a block volume: the flags are
// well-formed, the request cannot be done.
var errArchiveIntoBlock = errors.New("archive content needs a filesystem volume, not a block device")

// classify maps an error to the exit code and reason of package exitcode,
// by the typed errors of the packages where failures arise. What is not
// known to be permanent is retryable.
func classify(err error) (int, exitcode.Reason) {
	var (
		invalid *invalidArgsError
		status  *httpsource.StatusError
		regErr  *transport.Error
	)
	switch {
	case err == nil:
		return exitcode.Success, exitcode.ReasonCompleted
	case errors.As(err, &invalid):
		return exitcode.Usage, exitcode.ReasonInvalidArguments
	case isNeedsScratch(err):
		return exitcode.NeedsScratch, exitcode.ReasonNeedsScratch
	case errors.Is(err, checksum.ErrMismatch):
		return exitcode.Permanent, exitcode.ReasonChecksumMismatch
	case errors.Is(err, sink.ErrTooLarge), errors.Is(err, archive.ErrTooLarge):
		return exitcode.Permanent, exitcode.ReasonImageTooLarge
	case errors.Is(err, archive.ErrUnsafeEntry), errors.Is(err, qcow2.ErrUnsafe):
		return exitcode.Permanent, exitcode.ReasonUnsafeContent
	case isUnsupportedFormat(err):
		return exitcode.Permanent, exitcode.ReasonUnsupportedFormat
	case errors.As(err, &status):
		return exitcode.Retryable, byStatus(status.Code)
	case errors.As(err, &regErr):
		return exitcode.Retryable, byStatus(regErr.StatusCode)
	case errors.Is(err, httpsource.ErrTooManyRedirects), errors.Is(err, httpsource.ErrInsecureRedirect):
		return exitcode.Retryable, exitcode.ReasonHTTPError
	}
	return exitcode.Retryable, exitcode.ReasonTransferFailed
}

func isNeedsScratch(err error) bool {
	return errors.Is(err, importer.ErrNeedsScratch) || errors.Is(err, registry.ErrNeedsScratch)
}

func isUnsupportedFormat(err error) bool {
	for _, target := range []error{
		errArchiveIntoBlock, importer.ErrUnsupportedFormat, qcow2.ErrInvalid, qcow2.ErrUnsupported,
		registry.ErrNoDisk, tar.ErrHeader, format.ErrMemoryLimit,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func byStatus(code int) exitcode.Reason {
	switch code {
	case http.StatusNotFound:
		return exitcode.ReasonNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitcode.ReasonUnauthorized
	}
	return exitcode.ReasonHTTPError
}
