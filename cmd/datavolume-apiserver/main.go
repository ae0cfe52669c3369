// Command datavolume-apiserver serves the DataVolume API behind
// kube-apiserver's aggregation layer.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/datavolume/datavolume/pkg/apiserver"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(apiserver.NewCommand(ctx)))
}
