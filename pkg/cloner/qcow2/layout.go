package qcow2

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/go-logr/logr"
)

// Extent is one run of guest bytes as `qemu-img map --output=json`
// reports it: qemu-img, not this package, reads the qcow2 tables.
type Extent struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	Data   bool  `json:"data"`
	Zero   bool  `json:"zero"`
	// Offset is where the run is stored verbatim in the image file; nil
	// when it is not (unallocated, or compressed).
	Offset *int64 `json:"offset"`
}

// Copy is a run of guest bytes stored verbatim at Host in the image file.
type Copy struct {
	Guest, Host, Length int64
}

// maxExtents bounds the maps MapReaderAt and MapFile return: a map this
// fragmented is no longer worth streaming, and its JSON alone is large.
const maxExtents = 1 << 16

// ErrTooFragmented is returned for images of more than maxExtents runs,
// once the whole map has been checked.
var ErrTooFragmented = errors.New("qcow2 image map is too fragmented to stream")

// MapReaderAt lists the extents of a qcow2 image read through r (size
// bytes) with qemu-img map, over NBD. qemu-img reads only the image's
// tables for it, not its data. Like MapFile, it fails for an image that
// stores data past its end.
func MapReaderAt(ctx context.Context, log logr.Logger, r io.ReaderAt, size int64) ([]Extent, error) {
	var extents []Extent
	err := overNBD(ctx, log, r, size, func(ctx context.Context, file map[string]any) error {
		spec, err := imageSpec(file)
		if err != nil {
			return err
		}
		extents, err = gather(size, func(each func(Extent) error) error { return runMap(ctx, spec, each) })
		return err
	})
	return extents, err
}

// MapFile lists the extents of a local qcow2 file with qemu-img map: the
// check an image passes before it is converted. It fails with ErrInvalid
// for a file qemu-img cannot read or that stores data past its end (which
// qemu-img would convert reading zeros there), and returns
// ErrTooFragmented (after checking every extent) for a map of more than
// maxExtents runs.
func MapFile(ctx context.Context, path string) ([]Extent, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("mapping qcow2 image: %w", err)
	}
	spec, err := imageSpec(localFile(path))
	if err != nil {
		return nil, err
	}
	extents, err := gather(fi.Size(), func(each func(Extent) error) error { return runMap(ctx, spec, each) })
	var tool *ToolError
	if errors.As(err, &tool) && tool.Refused() && ctx.Err() == nil {
		// The file is here, whole: qemu-img cannot read the image.
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return extents, err
}

// gather checks each extent run hands over against a file of fileSize
// bytes and keeps the first maxExtents.
func gather(fileSize int64, run func(each func(Extent) error) error) ([]Extent, error) {
	var extents []Extent
	tooMany := false
	err := run(func(e Extent) error {
		if err := checkStored(e, fileSize); err != nil {
			return err
		}
		if len(extents) == maxExtents {
			extents, tooMany = nil, true
		}
		if !tooMany {
			extents = append(extents, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if tooMany {
		return nil, ErrTooFragmented
	}
	return extents, nil
}

// runMap runs qemu-img map on the image spec and hands each extent to each.
func runMap(ctx context.Context, spec string, each func(Extent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // kills qemu-img if the map is refused half-way
	cmd := exec.CommandContext(ctx, "qemu-img", "map", "--output=json", spec)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return qemuImgFailed("map", spec, nil, err)
	}
	var refused error // what each said: the map is read, and refused
	decodeErr := decodeMap(bufio.NewReader(stdout), func(e Extent) error {
		refused = each(e)
		return refused
	})
	if decodeErr != nil {
		cancel()
	}
	waitErr := cmd.Wait()
	// A decoding error of a qemu-img that failed on its own (printing
	// nothing to decode) is that failure; one of a qemu-img we stopped is
	// the decoding error.
	var exit *exec.ExitError
	if refused != nil || (decodeErr != nil && !(errors.As(waitErr, &exit) && exit.Exited())) {
		return decodeErr
	}
	if waitErr != nil {
		return qemuImgFailed("map", spec, stderr.b, waitErr)
	}
	return nil
}

// decodeMap reads qemu-img's JSON array one extent at a time, so a huge
// map is never held in memory; the first error of each stops it.
func decodeMap(r io.Reader, each func(Extent) error) error {
	dec := json.NewDecoder(r)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return fmt.Errorf("qemu-img map: output is not a JSON array (%v)", err)
	}
	for dec.More() {
		var e Extent
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("qemu-img map: decoding output: %w", err)
		}
		if err := each(e); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("qemu-img map: decoding output: %w", err)
	}
	return nil
}

// TruncatedError reports an image whose map places data past its end:
// qemu-img would read zeros there and convert it "successfully".
type TruncatedError struct {
	Extent   Extent
	FileSize int64
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *TruncatedError) Is(target error) bool { return target == ErrInvalid }

func (e *TruncatedError) Error() string {
	host := *e.Extent.Offset
	return fmt.Sprintf("qcow2 image is truncated: guest bytes %d-%d are stored at %d-%d, past its end (%d bytes)",
		e.Extent.Start, e.Extent.Start+e.Extent.Length-1, host, host+e.Extent.Length-1, e.FileSize)
}

// checkStored refuses an extent stored past the end of a file of fileSize
// bytes.
func checkStored(e Extent, fileSize int64) error {
	if e.Offset == nil || e.Zero || !e.Data {
		return nil
	}
	if host := *e.Offset; host < 0 || e.Length < 0 || host > fileSize-e.Length {
		return &TruncatedError{Extent: e, FileSize: fileSize}
	}
	return nil
}

// ErrNotSequential says an image's data cannot be streamed front to back:
// some is compressed, or stored out of guest order. qemu-img converts it.
var ErrNotSequential = errors.New("qcow2 data is compressed or not stored in guest order")

// Sequential plans reading an image file of fileSize bytes front to back
// and writing what it holds to a raw target of virtualSize bytes: every
// extent that holds data must be stored verbatim (not compressed), and
// their file order must be their guest order, so each write lands after
// the previous one. Runs that read as zeros are not copied. It returns
// ErrNotSequential when the image must be converted instead, and another
// error when the map shows a broken image: qemu-img reads data stored past
// the end of the file as zeros, so a truncated image would convert
// "successfully".
func Sequential(extents []Extent, fileSize, virtualSize int64) ([]Copy, error) {
	var plan []Copy
	var guestEnd, hostEnd int64
	sequential := true
	for _, e := range extents {
		if e.Start < guestEnd || e.Length <= 0 || e.Start > virtualSize-e.Length {
			return nil, fmt.Errorf("%w: qemu-img map: extent %d+%d is out of order or past the virtual size %d", ErrInvalid, e.Start, e.Length, virtualSize)
		}
		guestEnd = e.Start + e.Length
		if e.Zero || !e.Data {
			continue // reads as zeros: there is no backing file
		}
		if e.Offset == nil {
			sequential = false // compressed: only qemu-img can read it
			continue
		}
		if err := checkStored(e, fileSize); err != nil {
			return nil, err
		}
		host := *e.Offset
		if host < hostEnd {
			sequential = false // stored out of guest order, or shared
		}
		hostEnd = max(hostEnd, host+e.Length)
		if n := len(plan); n > 0 && plan[n-1].Guest+plan[n-1].Length == e.Start && plan[n-1].Host+plan[n-1].Length == host {
			plan[n-1].Length += e.Length
			continue
		}
		plan = append(plan, Copy{Guest: e.Start, Host: host, Length: e.Length})
	}
	if !sequential {
		return nil, ErrNotSequential
	}
	return plan, nil
}

// limitedBuffer keeps the first 4 KiB written to it: enough for an error.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
