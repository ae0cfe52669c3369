// Package registry reads a disk image out of a container image, the way
// CDI's registry import does: the image's filesystem must hold the disk as
// a file in /disk/.
//
// Two kinds of URL are understood:
//
//	docker://host[:port]/repository[:tag|@digest]   pulled with go-containerregistry
//	oci-archive:///path/to/image.tar                an OCI image layout in a tar file
//
// Registries on loopback addresses are spoken to over plain HTTP, as
// go-containerregistry does; Insecure allows that for any host.
package registry

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/datavolume/datavolume/pkg/cloner/archive"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
)

// Options says which image to read and how to reach it.
type Options struct {
	URL      string
	CAFile   string // PEM bundle, or a directory of them
	Username string
	Password string
	// Insecure allows plain HTTP and unverified TLS to the registry.
	Insecure bool
	// ScratchDir receives the unpacked layout of an oci-archive.
	ScratchDir string
	Log        logr.Logger
}

// ErrNoDisk reports an image without a disk file in /disk/.
var ErrNoDisk = errors.New("the image holds no disk file in /disk/")

// ErrNeedsScratch reports an oci-archive opened without a scratch
// directory to unpack it in.
var ErrNeedsScratch = errors.New("scratch space needed")

// Disk is the disk file inside an image, being read.
type Disk struct {
	io.Reader
	size    int64
	closers []func()
}

// Size is the disk file's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// Close stops reading and removes any unpacked archive.
func (d *Disk) Close() error {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
	return nil
}

// Open finds the disk file in the image and starts reading it. Layers are
// streamed: nothing but the disk file's bytes is kept.
func Open(ctx context.Context, o Options) (*Disk, error) {
	d := &Disk{}
	img, err := o.image(ctx, d)
	if err != nil {
		d.Close()
		return nil, err
	}
	fs := mutate.Extract(img)
	d.closers = append(d.closers, func() { fs.Close() })
	tr := tar.NewReader(fs)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			d.Close()
			return nil, ErrNoDisk
		}
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("reading image layers: %w", err)
		}
		p := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if dir, file := path.Split(p); dir == "disk/" && file != "" && hdr.Typeflag == tar.TypeReg {
			o.Log.Info("found disk in image", "file", "/"+p, "size", hdr.Size)
			d.Reader, d.size = tr, hdr.Size
			return d, nil
		}
	}
}

func (o Options) image(ctx context.Context, d *Disk) (v1.Image, error) {
	switch {
	case strings.HasPrefix(o.URL, "docker://"):
		return o.remoteImage(ctx, strings.TrimPrefix(o.URL, "docker://"))
	case strings.HasPrefix(o.URL, "oci-archive://"):
		return o.archiveImage(ctx, strings.TrimPrefix(o.URL, "oci-archive://"), d)
	}
	return nil, fmt.Errorf("registry url %q: want docker:// or oci-archive://", o.URL)
}

func (o Options) remoteImage(ctx context.Context, ref string) (v1.Image, error) {
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pool, err := certs.SystemPoolWith(o.CAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if o.Insecure {
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	auth := authn.Anonymous
	if o.Username != "" || o.Password != "" {
		auth = &authn.Basic{Username: o.Username, Password: o.Password}
	}
	o.Log.Info("pulling image", "image", r.Name())
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(tr))
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", r.Name(), err)
	}
	return img, nil
}

func (o Options) archiveImage(ctx context.Context, file string, d *Disk) (v1.Image, error) {
	if o.ScratchDir == "" {
		return nil, fmt.Errorf("%w: an oci-archive is unpacked in scratch space: pass --scratch", ErrNeedsScratch)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("opening oci-archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.ScratchDir, "oci-layout-")
	if err != nil {
		return nil, fmt.Errorf("creating scratch directory: %w", err)
	}
	d.closers = append(d.closers, func() { os.RemoveAll(dir) })
	// The same safe extraction as archive imports: a hostile archive
	// cannot write outside the scratch directory.
	x, err := archive.Extract(ctx, f, dir, fi.Size(), o.Log)
	if err != nil {
		return nil, fmt.Errorf("unpacking oci-archive: %w", err)
	}
	if err := x.Commit(); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout: %w", err)
	}
	return firstImage(idx)
}

// firstImage picks the image of an index, descending into nested indexes.
func firstImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading OCI index: %w", err)
	}
	for _, desc := range m.Manifests {
		if desc.MediaType.IsIndex() {
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, err
			}
			return firstImage(child)
		}
		if desc.MediaType.IsImage() {
			return idx.Image(desc.Digest)
		}
	}
	return nil, errors.New("the OCI archive holds no image")
}
