// Command datavolume-cloner is the data-movement job of a DataVolume:
// import, upload-server, clone, clone-source, clone-target, blank (and
// gen-certs). See pkg/cloner/cli; its exit codes and termination message
// are described in pkg/cloner/exitcode.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/datavolume/datavolume/pkg/cloner/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
