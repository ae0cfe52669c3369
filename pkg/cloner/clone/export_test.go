package clone

import (
	"bytes"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// HeaderLen is the size of the stream header on the wire.
const HeaderLen = 8 + 1 + 8 + 8

// ForgedStream is a disk clone stream of size bytes with data at offset 0
// whose digest does not match.
func ForgedStream(size uint64, data []byte) []byte {
	var b bytes.Buffer
	hdr := header{Kind: kindDisk, Size: size, DataBytes: uint64(len(data))}
	copy(hdr.Magic[:], magic)
	_ = binary.Write(&b, binary.BigEndian, hdr)
	b.WriteByte(frameData)
	_ = binary.Write(&b, binary.BigEndian, uint64(0))
	_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.Write(data)
	b.WriteByte(frameEnd)
	_ = binary.Write(&b, binary.BigEndian, xxhash.Sum64(data)^1)
	return b.Bytes()
}
