package nodenet

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
)

// BridgeName is the pods' bridge, in the node's network namespace.
const BridgeName = "dvcni0"

// WriteCNIConfig writes the pod network: a bridge that is the pods'
// gateway, addresses from pods, masquerade for traffic leaving the range,
// hairpin so a pod reaches itself through a Service, and port mappings.
func WriteCNIConfig(confDir, ipamDir string, pods *net.IPNet) error {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       cniNetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": pods.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(confDir, "10-datavolume.conflist"), b, 0o644)
}
