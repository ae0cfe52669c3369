package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/datavolume/datavolume/pkg/cloner/progress"
)

// blankCmd makes a blank disk, as CDI does for spec.source.blank: a sparse
// disk.img of the requested size in a filesystem volume; a block volume is
// already the disk and is left as it is.
type blankCmd struct {
	targetFlags
}

func (c *blankCmd) summary() string {
	return "create a blank disk: a sparse disk image file of --target-size, or a block device left as it is"
}

func (c *blankCmd) kind() progress.Kind { return progress.Import }

func (c *blankCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.target, "target", "", "the disk image file to create (<mount>/disk.img) or the block device")
	fs.Var(&c.targetSize, "target-size", "size of the disk image file as a quantity, e.g. 10Gi (required for a file)")
}

func (c *blankCmd) validate() error {
	switch {
	case c.target == "":
		return errors.New("--target is required")
	case isBlockDevice(c.target):
		return nil
	case isDir(c.target):
		return fmt.Errorf("--target %s is a directory: give the disk image file, e.g. %s/disk.img", c.target, strings.TrimRight(c.target, "/"))
	case filepath.Dir(filepath.Clean(c.target)) == "/dev":
		return fmt.Errorf("--target %s is not a block device", c.target)
	case c.targetSize.bytes == 0:
		return errors.New("--target-size is required for a disk image file")
	}
	return nil
}

func (c *blankCmd) run(_ context.Context, e *env) error {
	if isBlockDevice(c.target) {
		// Nothing to write, but the disk must be usable: the VM opens it
		// as this same unprivileged user.
		f, err := os.OpenFile(c.target, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("opening block device: %w", err)
		}
		f.Close()
		e.log.Info("blank block device left as it is", "target", c.target)
		return nil
	}
	f, err := os.OpenFile(c.target, os.O_RDWR|os.O_CREATE, 0o660)
	if err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("target %s is neither a regular file nor a block device", c.target)
	}
	want := c.targetSize.bytes
	switch {
	case fi.Size() < want:
		// A hole: the filesystem allocates nothing until the VM writes.
		if err := f.Truncate(want); err != nil {
			return fmt.Errorf("sizing disk image: %w", err)
		}
	case fi.Size() > want:
		// Never cut a disk: what lies past the size may be the VM's data.
		e.log.Info("disk image is larger than --target-size, left as it is", "size", fi.Size(), "targetSize", want)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing disk image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing disk image: %w", err)
	}
	if err := syncDir(filepath.Dir(c.target)); err != nil {
		return err
	}
	e.log.Info("created blank disk image", "target", c.target, "size", max(fi.Size(), want))
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
