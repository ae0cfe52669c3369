package exitcode_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
)

func TestRoundTrip(t *testing.T) {
	in := exitcode.Termination{
		Outcome: exitcode.Failed, ExitCode: exitcode.Permanent, Reason: exitcode.ReasonImageTooLarge,
		Message: "image needs 2 GiB,\n target holds 1 GiB", Bytes: 42, TargetSize: 1 << 30,
	}
	b := in.Encode()
	assert.Equal(t, bytes.Count(b, []byte("\n")), 1, "one line: %s", b)
	assert.Assert(t, bytes.HasSuffix(b, []byte("\n")))
	assert.Equal(t, string(b), `{"outcome":"Failed","exitCode":3,"reason":"ImageTooLarge","message":"image needs 2 GiB, target holds 1 GiB","bytes":42,"targetSize":1073741824}`+"\n")
	out, err := exitcode.Parse(string(b))
	assert.NilError(t, err)
	in.Message = "image needs 2 GiB, target holds 1 GiB"
	assert.DeepEqual(t, out, in)
}

// TestEncodeFits: however long or escape-heavy the message, the line fits
// the kubelet's 4096 bytes, stays valid JSON and valid UTF-8.
func TestEncodeFits(t *testing.T) {
	for name, msg := range map[string]string{
		"ascii":   strings.Repeat("a", 10000),
		"escapes": strings.Repeat("<>&\"\\", 3000),
		"unicode": strings.Repeat("größe€", 2000),
		"control": strings.Repeat("\x01", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			b := exitcode.Termination{Outcome: exitcode.Failed, ExitCode: 1, Reason: exitcode.ReasonTransferFailed, Message: msg}.Encode()
			assert.Assert(t, len(b) <= exitcode.MaxMessageBytes, "%d bytes", len(b))
			assert.Assert(t, len(b) > exitcode.MaxMessageBytes-64, "not cut more than needed: %d bytes", len(b))
			got, err := exitcode.Parse(string(b))
			assert.NilError(t, err)
			assert.Assert(t, utf8.ValidString(got.Message))
			assert.Assert(t, strings.HasSuffix(got.Message, "..."))
		})
	}
}

func TestParseErrors(t *testing.T) {
	for msg, want := range map[string]string{
		"":                                    "empty",
		"qemu-img: Could not open":            "not the cloner's JSON",
		`{"outcome":"Maybe","exitCode":1}`:    `outcome "Maybe"`,
		`{"exitCode":0,"reason":"Completed"}`: `outcome ""`,
	} {
		_, err := exitcode.Parse(msg)
		assert.ErrorContains(t, err, want)
	}
	// Unknown fields and reasons from a newer cloner are kept, not refused.
	got, err := exitcode.Parse(` {"outcome":"Failed","exitCode":1,"reason":"SomethingNew","extra":true}` + "\n")
	assert.NilError(t, err)
	assert.Equal(t, got.Reason, exitcode.Reason("SomethingNew"))
	assert.Equal(t, got.Reason.ExitCode(), exitcode.Retryable)
}

func TestReasonExitCodes(t *testing.T) {
	want := map[exitcode.Reason]int{
		exitcode.ReasonCompleted: 0, exitcode.ReasonChecksumMismatch: 3, exitcode.ReasonImageTooLarge: 3,
		exitcode.ReasonUnsafeContent: 3, exitcode.ReasonUnsupportedFormat: 3, exitcode.ReasonNeedsScratch: 4,
		exitcode.ReasonHTTPError: 1, exitcode.ReasonNotFound: 1, exitcode.ReasonUnauthorized: 1,
		exitcode.ReasonTransferFailed: 1, exitcode.ReasonInvalidArguments: 2,
	}
	assert.Equal(t, len(exitcode.Reasons), len(want))
	for _, r := range exitcode.Reasons {
		assert.Equal(t, r.ExitCode(), want[r], "%s", r)
	}
	assert.Assert(t, exitcode.IsPermanent(exitcode.Usage) && exitcode.IsPermanent(exitcode.Permanent))
	assert.Assert(t, !exitcode.IsPermanent(exitcode.Retryable) && !exitcode.IsPermanent(exitcode.NeedsScratch))
}
