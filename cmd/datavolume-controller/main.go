// Command datavolume-controller turns DataVolumes into claims and the Jobs
// that fill them; see pkg/controller.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/datavolume/datavolume/pkg/controller/app"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(app.NewCommand(ctx)))
}
