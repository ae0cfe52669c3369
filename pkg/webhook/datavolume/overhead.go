package datavolume

import (
	"fmt"
	"math"
)

// FilesystemOverhead is the share of a Filesystem volume that the
// filesystem itself takes, so a disk image never gets it: a Block source of
// size S needs a Filesystem target of S / (1 - overhead).
type FilesystemOverhead float64

// DefaultFilesystemOverhead is CDI's default (5.5%).
const DefaultFilesystemOverhead FilesystemOverhead = 0.055

// Validate accepts a share from 0 (no overhead) up to, not including, 1.
func (o FilesystemOverhead) Validate() error {
	if math.IsNaN(float64(o)) || o < 0 || o >= 1 {
		return fmt.Errorf("filesystem overhead %v must be at least 0 and less than 1", float64(o))
	}
	return nil
}

// String is the overhead as a percentage, e.g. "5.5%".
func (o FilesystemOverhead) String() string {
	return fmt.Sprintf("%g%%", float64(o)*100)
}
