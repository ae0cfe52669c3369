// Package preflight tests hack/preflight.sh, which make run and make test
// call before any build.
package preflight

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	assert.NilError(t, err, string(out))
	return string(out), 0
}

// This machine, which runs the tests as root with Go, passes silently.
func TestPreflightPassesHere(t *testing.T) {
	out, code := run(t, "../preflight.sh")
	assert.Equal(t, code, 0, out)
	assert.Check(t, !strings.Contains(out, "cannot run"), out)
}

// A newcomer without root and without Go is told both, and how to fix them,
// before any build: a real unprivileged user and a PATH without Go.
func TestPreflightNamesWhatIsMissing(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run as another user: %v", err)
	}
	out, code := run(t, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", "bash", "../preflight.sh")
	assert.Equal(t, code, 1, out)
	assert.Check(t, is.Contains(out, "not root"))
	assert.Check(t, is.Contains(out, "sudo -E"))
	assert.Check(t, is.Contains(out, "no Go on PATH: install Go 1.26"))
}
