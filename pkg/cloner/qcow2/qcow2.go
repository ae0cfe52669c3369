// Package qcow2 checks qcow2 headers and reads qcow2 images with qemu-img,
// the field's standard tool (the format's tables are never decoded here):
// qemu-img map says where an image stores each run of guest data, so an
// image stored in guest order can be streamed in one pass (Sequential),
// and qemu-img convert turns any other image to raw.
//
// An image is refused when opening it could read anything but its own
// bytes: a backing file or an external data file could name any host file.
// qemu-img is additionally given the source as a JSON spec with
// "backing": null, so it never opens a backing file even if one slipped by.
package qcow2

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"

	"github.com/datavolume/datavolume/pkg/cloner/nbd"
)

// HeaderLen is how many leading bytes ParseHeader needs.
const HeaderLen = 104

const (
	incompatDataFile = 1 << 2
	incompatCorrupt  = 1 << 1
)

// Errors that say why an image is refused; each comes wrapped with the
// details.
var (
	// ErrUnsafe: opening the image could read host files (a backing file
	// or an external data file).
	ErrUnsafe = errors.New("unsafe qcow2 image")
	// ErrInvalid: the image fails its check (header, corrupt flag, data
	// stored past its end, or qemu-img cannot read it).
	ErrInvalid = errors.New("invalid qcow2 image")
	// ErrUnsupported: a valid image of a kind not imported (an unknown
	// version, encryption).
	ErrUnsupported = errors.New("unsupported qcow2 image")
)

// Header is what the importer needs to know before converting.
type Header struct {
	Version     uint32
	VirtualSize int64
}

// ParseHeader reads a qcow2 header and refuses images that are unsafe or
// unsupported.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < 72 || string(b[:4]) != "QFI\xfb" {
		return Header{}, fmt.Errorf("%w: the header is truncated or has no magic", ErrInvalid)
	}
	be := binary.BigEndian
	h := Header{Version: be.Uint32(b[4:]), VirtualSize: int64(be.Uint64(b[24:]))}
	if h.Version != 2 && h.Version != 3 {
		return Header{}, fmt.Errorf("%w: version %d", ErrUnsupported, h.Version)
	}
	if h.VirtualSize < 0 {
		return Header{}, fmt.Errorf("%w: the virtual size overflows", ErrInvalid)
	}
	if be.Uint64(b[8:]) != 0 {
		return Header{}, fmt.Errorf("%w: it has a backing file, refused because it could read host files", ErrUnsafe)
	}
	if be.Uint32(b[32:]) != 0 {
		return Header{}, fmt.Errorf("%w: it is encrypted", ErrUnsupported)
	}
	if h.Version == 3 {
		if len(b) < 80 {
			return Header{}, fmt.Errorf("%w: the v3 header is truncated", ErrInvalid)
		}
		incompat := be.Uint64(b[72:])
		if incompat&incompatDataFile != 0 {
			return Header{}, fmt.Errorf("%w: it has an external data file, refused because it could read host files", ErrUnsafe)
		}
		if incompat&incompatCorrupt != 0 {
			return Header{}, fmt.Errorf("%w: it is marked corrupt", ErrInvalid)
		}
	}
	return h, nil
}

// Target is where the raw output goes.
type Target struct {
	Path string
	// Zeroed says the target already reads as zeros (a fresh sparse file),
	// so qemu-img need not write zero ranges.
	Zeroed bool
}

// ConvertFile converts a local qcow2 file to raw.
func ConvertFile(ctx context.Context, log logr.Logger, path string, dst Target) error {
	return convert(ctx, log, localFile(path), dst)
}

// localFile is the qemu block spec of a local file.
func localFile(path string) map[string]any {
	return map[string]any{"driver": "file", "filename": path}
}

// ConvertReaderAt converts a qcow2 image read through r (size bytes), for
// example HTTP range requests, by exporting it to qemu-img over NBD on a
// private Unix socket.
func ConvertReaderAt(ctx context.Context, log logr.Logger, r io.ReaderAt, size int64, dst Target) error {
	return overNBD(ctx, log, r, size, func(ctx context.Context, file map[string]any) error {
		return convert(ctx, log, file, dst)
	})
}

// overNBD serves r to qemu-img over NBD while run runs; file is the
// qemu block spec of that export.
func overNBD(ctx context.Context, log logr.Logger, r io.ReaderAt, size int64, run func(ctx context.Context, file map[string]any) error) error {
	dir, err := os.MkdirTemp("", "datavolume-nbd-")
	if err != nil {
		return fmt.Errorf("creating nbd socket dir: %w", err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening for nbd: %w", err)
	}
	srv := &nbd.Server{Data: r, Size: size, Log: log}
	ctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	err = run(ctx, map[string]any{
		"driver": "nbd",
		"server": map[string]any{"type": "unix", "path": sock},
	})
	cancel()
	<-served
	if err != nil {
		if readErr := srv.Err(); readErr != nil {
			return fmt.Errorf("reading source: %w", readErr)
		}
		return err
	}
	return nil
}

// imageSpec is the qemu block spec of the qcow2 image in file. Its
// "backing": null keeps qemu from opening any backing file.
func imageSpec(file map[string]any) (string, error) {
	spec, err := json.Marshal(map[string]any{"driver": "qcow2", "backing": nil, "file": file})
	if err != nil {
		return "", err
	}
	return "json:" + string(spec), nil
}

func convert(ctx context.Context, log logr.Logger, file map[string]any, dst Target) error {
	spec, err := imageSpec(file)
	if err != nil {
		return err
	}
	// -n: the target exists (we own its lifecycle); -W: out-of-order
	// writes; -m 16: more requests in flight against a remote source.
	args := []string{"convert", "-n", "-W", "-m", "16", "-O", "raw"}
	if dst.Zeroed {
		args = append(args, "--target-is-zero")
	}
	// qemu-img writes through the page cache, which the caller syncs:
	// with -t none (O_DIRECT) it writes cluster by cluster, and converting
	// a compressed image took 1.39 s instead of 0.84 s here.
	args = append(args, spec, dst.Path)
	log.V(1).Info("running qemu-img", "args", strings.Join(args[:len(args)-2], " "))
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return qemuImgFailed("convert", spec, out, err)
	}
	return nil
}

// ToolError is a qemu-img run that failed.
type ToolError struct {
	Subcommand string
	Output     string // the first line qemu-img printed, or the error
	Err        error
}

func (e *ToolError) Error() string { return "qemu-img " + e.Subcommand + ": " + e.Output }

func (e *ToolError) Unwrap() error { return e.Err }

// Refused tells whether qemu-img ran and exited with an error status, as
// it does for an image it cannot read, rather than being missing, killed
// or cancelled.
func (e *ToolError) Refused() bool {
	var exit *exec.ExitError
	return errors.As(e.Err, &exit) && exit.Exited()
}

// qemuImgFailed explains a failed qemu-img subcommand by the first line it
// printed, or says how to install a missing qemu-img.
func qemuImgFailed(subcommand, spec string, out []byte, err error) error {
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("qemu-img not found (run hack/install-deps.sh): %w", err)
	}
	// "qemu-img: Could not open 'json:{...}': reason" reads better, in a
	// message for people, as "Could not open the image: reason".
	line := strings.TrimPrefix(firstLine(out, err), "qemu-img: ")
	line = strings.ReplaceAll(line, "'"+spec+"'", "the image")
	return &ToolError{Subcommand: subcommand, Output: line, Err: err}
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
