// Package version says which build of datavolume is running. `make build`
// sets the two variables with -ldflags -X from git; a plain `go build`
// leaves them at "dev" and "unknown".
package version

import (
	"fmt"
	"runtime"
)

// Set at link time (see the Makefile's LDFLAGS).
var (
	version  = "v0.0.0-dev"
	revision = "unknown"
)

// Info is what a binary reports of its build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this binary's build information.
func Get() Info {
	return Info{
		Version:   version,
		Revision:  revision,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// String is the one line `--version` prints after the program's name.
func (i Info) String() string {
	return fmt.Sprintf("%s (revision %s, %s, %s)", i.Version, i.Revision, i.GoVersion, i.Platform)
}
