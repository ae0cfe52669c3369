//go:build tools

// Package localpathprovisioner pins rancher's local-path-provisioner, the
// local cluster's dynamic provisioner, as kind runs it.
package localpathprovisioner

import _ "github.com/rancher/local-path-provisioner"
