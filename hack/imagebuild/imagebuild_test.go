package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	assert.NilError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	assert.NilError(t, os.WriteFile(path, []byte(content), 0o755))
	return path
}

// The same files make the same image; a changed byte makes another.
func TestImageIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "server"), "binary v1")
	spec := imageSpec{Name: "server", MinimalEtc: true, Entrypoint: "/usr/local/bin/server",
		Files: []fileEntry{{Source: bin, Target: "/usr/local/bin/server", Mode: 0o755}}}
	digest := func() string {
		img, err := buildImage(spec)
		assert.NilError(t, err)
		d, err := img.Digest()
		assert.NilError(t, err)
		return d.String()
	}
	first := digest()
	assert.Equal(t, digest(), first)
	writeFile(t, bin, "binary v2")
	assert.Assert(t, digest() != first)
}

// The files layer is byte-identical from build to build, and the config
// carries no time.
func TestLayerAndConfigHaveNoTimes(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "server"), "binary")
	spec := imageSpec{Name: "server", MinimalEtc: true, Entrypoint: "/server",
		Files: []fileEntry{{Source: bin, Target: "/server", Mode: 0o755}}}
	layerBytes := func() []byte {
		layer, err := filesLayer(spec)
		assert.NilError(t, err)
		rc, err := layer.Compressed()
		assert.NilError(t, err)
		defer rc.Close()
		b, err := io.ReadAll(rc)
		assert.NilError(t, err)
		return b
	}
	assert.Assert(t, bytes.Equal(layerBytes(), layerBytes()))

	img, err := buildImage(spec)
	assert.NilError(t, err)
	cf, err := img.ConfigFile()
	assert.NilError(t, err)
	assert.Check(t, cf.Created.IsZero())
	assert.Check(t, is.Len(cf.History, 0))
	assert.Check(t, is.Len(cf.RootFS.DiffIDs, 1))
}

type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Link     string
	Body     string
	Unix     int64
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var entries []tarEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		assert.NilError(t, err)
		body, err := io.ReadAll(tr)
		assert.NilError(t, err)
		entries = append(entries, tarEntry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, string(body), hdr.ModTime.Unix()})
	}
}

// Entries are sorted, parents explicit, owned by root, at the epoch.
func TestLayerEntries(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "b"), "x")
	var buf bytes.Buffer
	assert.NilError(t, writeLayer(&buf, layerSpec{
		Files:  []fileEntry{{Source: bin, Target: "/usr/local/bin/b", Mode: 0o755}},
		Inline: []inlineEntry{{Target: "/etc/passwd", Mode: 0o644, Content: "root:x:0:0::/:/x\n"}},
		Dirs:   map[string]os.FileMode{"/tmp": 0o777 | os.ModeSticky},
	}))
	assert.DeepEqual(t, readTar(t, &buf), []tarEntry{
		{"etc/", tar.TypeDir, 0o755, 0, 0, "", "", 0},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, "", "root:x:0:0::/:/x\n", 0},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, "", "", 0},
		{"usr/", tar.TypeDir, 0o755, 0, 0, "", "", 0},
		{"usr/local/", tar.TypeDir, 0o755, 0, 0, "", "", 0},
		{"usr/local/bin/", tar.TypeDir, 0o755, 0, 0, "", "", 0},
		{"usr/local/bin/b", tar.TypeReg, 0o755, 0, 0, "", "x", 0},
	})
}

// A packed root keeps symlinks and hard links and leaves out what the
// runtime mounts.
func TestRootfsLayer(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "usr/bin/qemu-img"), "qemu")
	assert.NilError(t, os.Link(filepath.Join(root, "usr/bin/qemu-img"), filepath.Join(root, "usr/bin/qemu-img-link")))
	assert.NilError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	writeFile(t, filepath.Join(root, "proc/cpuinfo"), "cpu")
	writeFile(t, filepath.Join(root, "var/cache/apt/archives/x.deb"), "deb")
	writeFile(t, filepath.Join(root, "var/cache/ldconfig/aux-cache"), "inodes")
	var buf bytes.Buffer
	assert.NilError(t, writeRootfsLayer(&buf, root))
	byName := map[string]tarEntry{}
	var names []string
	for _, e := range readTar(t, &buf) {
		byName[e.Name] = e
		names = append(names, e.Name)
		assert.Check(t, is.Equal(e.Unix, int64(0)), e.Name)
	}
	assert.DeepEqual(t, names, []string{"bin", "proc/", "usr/", "usr/bin/", "usr/bin/qemu-img", "usr/bin/qemu-img-link",
		"var/", "var/cache/", "var/cache/apt/", "var/cache/apt/archives/", "var/cache/ldconfig/"})
	assert.Check(t, is.Equal(byName["bin"].Link, "usr/bin"))
	assert.Check(t, is.Equal(byName["bin"].Type, byte(tar.TypeSymlink)))
	assert.Check(t, is.Equal(byName["usr/bin/qemu-img-link"].Type, byte(tar.TypeLink)))
	assert.Check(t, is.Equal(byName["usr/bin/qemu-img-link"].Link, "usr/bin/qemu-img"))
}

// The tarball loads back with its tag, entrypoint and user, and an
// unchanged image is recognised without rewriting it.
func TestTarballRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "pause"), "pause binary")
	img, err := buildImage(imageSpec{Name: "pause", Entrypoint: "/pause", User: "65535",
		Files: []fileEntry{{Source: bin, Target: "/pause", Mode: 0o755}}})
	assert.NilError(t, err)
	ref, err := reference("pause", img)
	assert.NilError(t, err)
	digest, err := img.Digest()
	assert.NilError(t, err)
	assert.Equal(t, ref.String(), "datavolume.local/pause:"+digest.Hex[:12])

	out := filepath.Join(dir, "pause.tar")
	assert.NilError(t, tarball.WriteToFile(out, ref, img))
	loaded, err := tarball.ImageFromPath(out, &ref)
	assert.NilError(t, err)
	cf, err := loaded.ConfigFile()
	assert.NilError(t, err)
	assert.DeepEqual(t, cf.Config.Entrypoint, []string{"/pause"})
	assert.Equal(t, cf.Config.User, "65535")
	same, err := tarballHolds(out, ref)
	assert.NilError(t, err)
	assert.Assert(t, same)
}

// Unchanged inputs find the recorded reference; a changed file does not.
func TestInputsKeyFindsUnchangedBuild(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "bin"), "one")
	spec := imageSpec{Name: "x", Entrypoint: "/x", Files: []fileEntry{{Source: bin, Target: "/x", Mode: 0o755}}}
	key, err := inputsKey(spec)
	assert.NilError(t, err)
	keyFile, tarPath := filepath.Join(dir, "x.inputs"), writeFile(t, filepath.Join(dir, "x.tar"), "tarball")
	assert.NilError(t, os.WriteFile(keyFile, []byte(key+" datavolume.local/x:0123456789ab\n"), 0o644))

	ref, ok := builtFrom(keyFile, tarPath, key)
	assert.Assert(t, ok)
	assert.Equal(t, ref, "datavolume.local/x:0123456789ab")

	writeFile(t, bin, "two")
	changed, err := inputsKey(spec)
	assert.NilError(t, err)
	_, ok = builtFrom(keyFile, tarPath, changed)
	assert.Assert(t, !ok, "a changed binary reused the old image")
	assert.NilError(t, os.Remove(tarPath))
	_, ok = builtFrom(keyFile, tarPath, key)
	assert.Assert(t, !ok, "a missing tarball was taken as built")
}
