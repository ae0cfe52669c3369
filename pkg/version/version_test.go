package version

import (
	"runtime"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

func TestStringNamesVersionRevisionAndGo(t *testing.T) {
	saved := [2]string{version, revision}
	t.Cleanup(func() { version, revision = saved[0], saved[1] })
	version, revision = "v1.2.3", "0123456789abcdef"

	got := Get()
	assert.Equal(t, got.Version, "v1.2.3")
	assert.Equal(t, got.Revision, "0123456789abcdef")
	assert.Equal(t, got.Platform, runtime.GOOS+"/"+runtime.GOARCH)
	s := got.String()
	for _, want := range []string{"v1.2.3", "revision 0123456789abcdef", runtime.Version()} {
		assert.Assert(t, strings.Contains(s, want), "%q lacks %q", s, want)
	}
}
