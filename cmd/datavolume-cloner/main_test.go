package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

// TestBinary builds the command and checks its contract: subcommands in
// --help, and one error line with a non-zero exit on failure.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "datavolume-cloner")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	assert.NilError(t, err, "%s", out)

	help, err := exec.Command(bin, "--help").Output()
	assert.NilError(t, err)
	for _, cmd := range []string{"import", "upload-server", "clone-source", "clone-target"} {
		assert.Assert(t, strings.Contains(string(help), cmd), "--help lists %s", cmd)
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "import", "--url", "http://127.0.0.1:1/disk.img", "--target", filepath.Join(t.TempDir(), "disk.img"),
		"--retries", "1", "--connect-timeout", "1s")
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	assert.Assert(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, exit.ExitCode(), 1)
	assert.Equal(t, strings.Count(stderr.String(), "\n"), 1, "%q", stderr.String())
	assert.Assert(t, strings.Contains(stderr.String(), "connection refused"), stderr.String())
}
