package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
)

// TestBinary builds the command and checks its contract: subcommands in
// --help, and on failure one error line, the exit code and the
// termination message of package exitcode.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "datavolume-cloner")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	assert.NilError(t, err, "%s", out)

	help, err := exec.Command(bin, "--help").Output()
	assert.NilError(t, err)
	for _, cmd := range []string{"import", "upload-server", "clone-source", "clone-target", "clone", "blank", "gen-certs"} {
		assert.Assert(t, strings.Contains(string(help), cmd), "--help lists %s", cmd)
	}

	var stderr bytes.Buffer
	termination := filepath.Join(t.TempDir(), "termination-log")
	cmd := exec.Command(bin, "import", "--url", "http://127.0.0.1:1/disk.img", "--target", filepath.Join(t.TempDir(), "disk.img"),
		"--retries", "1", "--connect-timeout", "1s", "--termination-log", termination)
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	assert.Assert(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, exit.ExitCode(), 1)
	assert.Equal(t, strings.Count(stderr.String(), "\n"), 1, "%q", stderr.String())
	assert.Assert(t, strings.Contains(stderr.String(), "connection refused"), stderr.String())
	data, err := os.ReadFile(termination)
	assert.NilError(t, err)
	term, err := exitcode.Parse(string(data))
	assert.NilError(t, err)
	assert.Equal(t, term.ExitCode, exitcode.Retryable)
	assert.Equal(t, term.Reason, exitcode.ReasonTransferFailed)
	assert.Assert(t, strings.Contains(stderr.String(), term.Message))

	// A usage error is exit code 2.
	err = exec.Command(bin, "import", "--bogus").Run()
	assert.Assert(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, exit.ExitCode(), exitcode.Usage)
}
