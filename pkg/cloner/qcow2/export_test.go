package qcow2

import "io"

// DecodeMap decodes a map as MapFile does, for an image of fileSize bytes.
func DecodeMap(r io.Reader, fileSize int64) ([]Extent, error) {
	return gather(fileSize, func(each func(Extent) error) error { return decodeMap(r, each) })
}
