// Package clone copies a volume to another over mutual TLS: clone-source
// reads a disk image file, a block device or (for archive content) a
// directory and streams it to clone-target, which writes it like an import.
// When one pod mounts both volumes (a clone within a namespace), Copy does
// the same in one process, with no network, TLS or digest.
//
// The transfer is sparse: on a file only the extents SEEK_DATA/SEEK_HOLE
// report are read, zero blocks inside them (and on block devices) are not
// sent, and the target turns what it does not receive into holes (file) or
// zeroed ranges (block device). So a disk moves between filesystem and
// block volumes in either direction.
//
// The wire format, after the TLS handshake (integers big-endian):
//
//	source → target  header: "DVCLONE1", kind byte ('k' disk, 'a' archive),
//	                 logical size u64, data bytes to send u64
//	target → source  'K' (accepted) or 'F' u32 len, message (refused, e.g. too large)
//	source → target  frames: 'D' offset u64, length u32, data   (disk)
//	                         'A' length u32, data               (archive: a tar stream)
//	                 then 'E' digest (8 bytes)
//	target → source  'K' once the data is written, synced and the digest matched,
//	                 or 'F' u32 len, message
//
// The digest is XXH64 over every frame's header fields and data. TLS
// already authenticates each byte on the wire; the digest checks the
// pipeline end to end (reading, framing, reassembly) at a cost small
// enough not to slow a multi-GB/s copy, which SHA-256 would.
package clone

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	magic        = "DVCLONE1"
	kindDisk     = 'k'
	kindArchive  = 'a'
	frameData    = 'D'
	frameArchive = 'A'
	frameEnd     = 'E'
	replyOK      = 'K'
	replyFailed  = 'F'

	chunkSize    = 1 << 20 // read unit and largest frame
	chunks       = 4
	maxReplySize = 4096
)

// Kind is what a clone carries.
type Kind string

// Kinds, named like DataVolume content types.
const (
	KubeVirt Kind = "kubevirt" // a disk image: file or block device
	Archive  Kind = "archive"  // a directory tree
)

func (k Kind) wire() (byte, error) {
	switch k {
	case KubeVirt, "":
		return kindDisk, nil
	case Archive:
		return kindArchive, nil
	}
	return 0, fmt.Errorf("content type %q: want kubevirt or archive", k)
}

type header struct {
	Magic     [8]byte
	Kind      byte
	Size      uint64
	DataBytes uint64
}

func writeReply(w io.Writer, err error) error {
	if err == nil {
		_, werr := w.Write([]byte{replyOK})
		return werr
	}
	msg := err.Error()
	if len(msg) > maxReplySize {
		msg = msg[:maxReplySize]
	}
	b := binary.BigEndian.AppendUint32([]byte{replyFailed}, uint32(len(msg)))
	_, werr := w.Write(append(b, msg...))
	return werr
}

// errRemote is a failure the other side reported.
var errRemote = errors.New("clone target")

func readReply(r io.Reader) error {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("reading the target's answer: %w", err)
	}
	switch b[0] {
	case replyOK:
		return nil
	case replyFailed:
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil || n > maxReplySize {
			return fmt.Errorf("%w failed (unreadable reason)", errRemote)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(r, msg); err != nil {
			return fmt.Errorf("%w failed (unreadable reason)", errRemote)
		}
		return fmt.Errorf("%w: %s", errRemote, msg)
	}
	return fmt.Errorf("unexpected answer %q from the target", b[0])
}
