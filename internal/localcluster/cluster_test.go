package localcluster

import (
	"testing"

	"gotest.tools/v3/assert"
)

// The lock file names the directory of the run holding it; a run that was
// killed leaves that name behind for the next start to clean up after.
func TestLockHolderDir(t *testing.T) {
	assert.Equal(t, lockHolderDir(lockHolder(4242, "/check/work/main/_output/e2e")), "/check/work/main/_output/e2e")
	assert.Equal(t, lockHolderDir(lockHolder(1, "/tmp/a, directory b/x")), "/tmp/a, directory b/x")
	assert.Equal(t, lockHolderDir(""), "", "a run that stopped cleanly empties the file")
	assert.Equal(t, lockHolderDir("pid 1, directory relative/dir"), "")
	assert.Equal(t, lockHolderDir("garbage"), "")
}
