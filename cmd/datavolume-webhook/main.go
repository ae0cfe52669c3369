// Command datavolume-webhook is the admission webhook of DataVolumes and
// KubeVirt VirtualMachines; see pkg/webhook.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/datavolume/datavolume/pkg/webhook/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.NewCommand().ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}
