package datavolume

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/datavolume/datavolume/pkg/webhook/admission"
)

// storageSizePath is where a clone's size goes, one key per level.
var storageSizePath = []string{"spec", "storage", "resources", "requests", "storage"}

// storageSizePatch adds spec.storage.resources.requests.storage to the
// object as it was sent, adding whichever parents it lacks (a JSON patch
// "add" needs its parent to exist).
func storageSizePatch(raw []byte, size resource.Quantity) ([]admission.PatchOperation, error) {
	var object map[string]any
	if err := json.Unmarshal(raw, &object); err != nil {
		return nil, fmt.Errorf("reading the DataVolume to patch: %w", err)
	}
	current, path := object, ""
	for i, key := range storageSizePath {
		path += "/" + key
		next, isObject := current[key].(map[string]any)
		if i == len(storageSizePath)-1 || !isObject {
			if i < 2 {
				// spec and spec.storage were decoded; the JSON must hold them.
				return nil, errors.New("the DataVolume has no spec.storage object to patch")
			}
			return []admission.PatchOperation{{Op: "add", Path: path, Value: nested(storageSizePath[i+1:], size.String())}}, nil
		}
		current = next
	}
	return nil, errors.New("unreachable: the size path always ends in an add")
}

// nested wraps value in one object per key: nested([a b], v) = {a: {b: v}}.
func nested(keys []string, value any) any {
	for i := len(keys) - 1; i >= 0; i-- {
		value = map[string]any{keys[i]: value}
	}
	return value
}
