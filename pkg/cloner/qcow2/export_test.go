package qcow2

import "io"

// DecodeMap decodes a map as MapFile does.
func DecodeMap(r io.Reader) ([]Extent, error) {
	return gather(func(each func(Extent) error) error { return decodeMap(r, each) })
}
