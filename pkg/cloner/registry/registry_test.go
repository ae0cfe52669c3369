package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/registry"
)

// diskImage builds a container image whose layer holds files (path → file on disk).
func diskImage(t *testing.T, files map[string]string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for p, src := range files {
		data, err := os.ReadFile(src)
		assert.NilError(t, err)
		assert.NilError(t, tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err = tw.Write(data)
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	assert.NilError(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer)
	assert.NilError(t, err)
	return img
}

func push(t *testing.T, host, repo string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(host + "/" + repo)
	assert.NilError(t, err)
	assert.NilError(t, remote.Write(ref, img))
	return "docker://" + host + "/" + repo
}

func importImage(t *testing.T, url, target, scratch string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	disk, err := registry.Open(ctx, registry.Options{URL: url, ScratchDir: scratch, Log: logr.Discard()})
	if err != nil {
		return err
	}
	return importer.Import(ctx, disk, importer.Options{
		ContentType: importer.KubeVirt, Target: target, TargetSize: 32 << 20, ScratchDir: scratch,
		RawOrQcow2Only: true, Log: logr.Discard(),
	})
}

// TestRegistryImport pushes images to a real docker-registry on loopback
// and imports their disks.
func TestRegistryImport(t *testing.T) {
	testenv.RequireTools(t, "qemu-img", "gzip", "tar")
	host := testenv.Registry(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	testenv.WriteDisk(t, raw, 8<<20, 5)
	qcow := filepath.Join(dir, "disk.qcow2")
	testenv.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	testenv.Shell(t, "gzip -k "+raw)

	rawURL := push(t, host, "vm/raw:v1", diskImage(t, map[string]string{"disk/disk.img": raw}))
	qcowURL := push(t, host, "vm/qcow2:v1", diskImage(t, map[string]string{"disk/rhel.qcow2": qcow}))
	noDiskURL := push(t, host, "vm/nodisk:v1", diskImage(t, map[string]string{"opt/disk.img": raw}))
	gzURL := push(t, host, "vm/gz:v1", diskImage(t, map[string]string{"disk/disk.img.gz": raw + ".gz"}))

	// An oci-archive of the qcow2 image, as skopeo or buildah write it.
	layoutDir := filepath.Join(dir, "layout")
	p, err := layout.Write(layoutDir, empty.Index)
	assert.NilError(t, err)
	assert.NilError(t, p.AppendImage(diskImage(t, map[string]string{"disk/disk.qcow2": qcow})))
	ociArchive := filepath.Join(dir, "image.tar")
	testenv.Run(t, "tar", "-C", layoutDir, "-cf", ociArchive, ".")

	for _, tc := range []struct {
		name    string
		url     string
		wantErr string
	}{
		{name: "raw disk", url: rawURL},
		{name: "qcow2 disk", url: qcowURL},
		{name: "oci-archive", url: "oci-archive://" + ociArchive},
		{name: "no /disk directory", url: noDiskURL, wantErr: "no disk file in /disk/"},
		{name: "compressed disk", url: gzURL, wantErr: "gzip-compressed images are not supported"},
		{name: "missing tag", url: "docker://" + host + "/vm/raw:nope", wantErr: "MANIFEST_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			scratch := t.TempDir()
			err := importImage(t, tc.url, target, scratch)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				_, serr := os.Stat(target)
				assert.Assert(t, os.IsNotExist(serr), "no disk.img after a failure")
			} else {
				assert.NilError(t, err)
				testenv.AssertSameDisk(t, target, raw)
			}
			entries, err := os.ReadDir(scratch)
			assert.NilError(t, err)
			assert.Equal(t, len(entries), 0, "scratch space is cleaned up")
		})
	}
}
