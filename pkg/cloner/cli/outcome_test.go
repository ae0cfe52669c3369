package cli

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"gotest.tools/v3/assert"

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

// TestClassify maps the typed errors of each package, wrapped as they
// reach the command, to the exit code and reason; what is not known to be
// permanent is retryable. (The CLI tests produce most of them for real.)
func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("importing: %w", fmt.Errorf("step: %w", err)) }
	for _, tc := range []struct {
		err    error
		code   int
		reason exitcode.Reason
	}{
		{nil, 0, exitcode.ReasonCompleted},
		{invalidArgs(errors.New("--url is required")), 2, exitcode.ReasonInvalidArguments},
		{wrap(fmt.Errorf("%w: x", importer.ErrNeedsScratch)), 4, exitcode.ReasonNeedsScratch},
		{wrap(fmt.Errorf("%w: x", registry.ErrNeedsScratch)), 4, exitcode.ReasonNeedsScratch},
		{wrap(fmt.Errorf("%w: want a, got b", checksum.ErrMismatch)), 3, exitcode.ReasonChecksumMismatch},
		{wrap(&sink.TooLargeError{ImageSize: 2, TargetSize: 1}), 3, exitcode.ReasonImageTooLarge},
		{wrap(fmt.Errorf("%w: files exceed", archive.ErrTooLarge)), 3, exitcode.ReasonImageTooLarge},
		{wrap(&archive.EntryError{Name: "../x", Err: errors.New("no")}), 3, exitcode.ReasonUnsafeContent},
		{wrap(fmt.Errorf("%w: backing file", qcow2.ErrUnsafe)), 3, exitcode.ReasonUnsafeContent},
		{wrap(fmt.Errorf("%w: found a tar archive", importer.ErrUnsupportedFormat)), 3, exitcode.ReasonUnsupportedFormat},
		{wrap(&qcow2.TruncatedError{Extent: qcow2.Extent{Offset: new(int64)}}), 3, exitcode.ReasonUnsupportedFormat},
		{wrap(fmt.Errorf("%w: version 4", qcow2.ErrUnsupported)), 3, exitcode.ReasonUnsupportedFormat},
		{wrap(registry.ErrNoDisk), 3, exitcode.ReasonUnsupportedFormat},
		{wrap(fmt.Errorf("reading tar: %w", tar.ErrHeader)), 3, exitcode.ReasonUnsupportedFormat},
		{wrap(fmt.Errorf("decompressing xz: %w", format.ErrMemoryLimit)), 3, exitcode.ReasonUnsupportedFormat},
		{errArchiveIntoBlock, 3, exitcode.ReasonUnsupportedFormat},
		{wrap(&httpsource.StatusError{Code: 404, Status: "404 Not Found"}), 1, exitcode.ReasonNotFound},
		{wrap(&httpsource.StatusError{Code: 401, Status: "401 Unauthorized"}), 1, exitcode.ReasonUnauthorized},
		{wrap(&httpsource.StatusError{Code: 403, Status: "403 Forbidden"}), 1, exitcode.ReasonUnauthorized},
		{wrap(&httpsource.StatusError{Code: 500, Status: "500 Internal Server Error"}), 1, exitcode.ReasonHTTPError},
		{wrap(&httpsource.StatusError{Code: 410, Status: "410 Gone"}), 1, exitcode.ReasonHTTPError},
		{wrap(&transport.Error{StatusCode: http.StatusNotFound}), 1, exitcode.ReasonNotFound},
		{wrap(&transport.Error{StatusCode: http.StatusUnauthorized}), 1, exitcode.ReasonUnauthorized},
		{wrap(fmt.Errorf("%w: stopped after 5", httpsource.ErrTooManyRedirects)), 1, exitcode.ReasonHTTPError},
		{wrap(fmt.Errorf("%w: a to b", httpsource.ErrInsecureRedirect)), 1, exitcode.ReasonHTTPError},
		{wrap(syscall.ECONNREFUSED), 1, exitcode.ReasonTransferFailed},
		{wrap(io.ErrUnexpectedEOF), 1, exitcode.ReasonTransferFailed},
		{wrap(context.Canceled), 1, exitcode.ReasonTransferFailed},
		{wrap(&qcow2.ToolError{Subcommand: "convert", Output: "No space left on device"}), 1, exitcode.ReasonTransferFailed},
		{errors.New("checksum mismatch: source sent digest 1, target received 2"), 1, exitcode.ReasonTransferFailed},
	} {
		code, reason := classify(tc.err)
		assert.Equal(t, code, tc.code, "%v", tc.err)
		assert.Equal(t, reason, tc.reason, "%v", tc.err)
		assert.Equal(t, reason.ExitCode(), code, "reason and code agree for %v", tc.err)
	}
}

func TestRedact(t *testing.T) {
	msg := "GET https://host/x: token Bearer s3cret-Token refused for user admin, a=1"
	got := redact(msg, []string{"Bearer s3cret-Token", "admin", "1", ""})
	assert.Equal(t, got, "GET https://host/x: token <redacted> refused for user <redacted>, a=1")
}

func TestScanFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus", "--termination-log", "/a"}, "/a"},
		{[]string{"--termination-log=/b", "--x"}, "/b"},
		{[]string{"--termination-log=/b", "--termination-log", "/c"}, "/c"},
		{[]string{"--termination-log="}, ""},
		{[]string{"--termination-log"}, "def"},
		{[]string{"--", "--termination-log", "/d"}, "def"},
	} {
		assert.Equal(t, scanFlag(tc.args, "termination-log", "def"), tc.want, "%q", tc.args)
	}
}
