// Command coredns is CoreDNS with the plugins the local cluster's Corefile
// (artifacts/local-cluster/coredns.yaml) uses, linked in the way CoreDNS
// documents for a custom build. The stock build links every plugin, cloud
// DNS providers and tracing SDKs included, and took four minutes of the
// first `make test` on 2 cores; this one compiles in a fraction of that.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }
