//go:build tools

// Package coredns pins the CoreDNS server the local cluster runs.
package coredns

import _ "github.com/coredns/coredns"
