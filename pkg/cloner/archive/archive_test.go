package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	size       int64 // overrides len(body) in the header
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if hdr.Typeflag == tar.TypeDir {
			hdr.Mode = 0o755
		}
		assert.NilError(t, tw.WriteHeader(hdr))
		if hdr.Size > 0 {
			_, err := tw.Write([]byte(e.body))
			assert.NilError(t, err)
		}
	}
	assert.NilError(t, tw.Close())
	return buf.Bytes()
}

// listTree returns "path" for files and dirs, "path -> target" for links.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			rel += " -> " + target
		} else if fi.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	assert.NilError(t, err)
	sort.Strings(out)
	return out
}

func extract(t testing.TB, dir string, data []byte, limit int64) error {
	x, err := archive.Extract(context.Background(), bytes.NewReader(data), dir, limit, logr.Discard())
	if err != nil {
		return err
	}
	return x.Commit()
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, os.Mkdir(filepath.Join(dir, "lost+found"), 0o700))
	data := makeTar(t,
		entry{name: "./", typ: tar.TypeDir},
		entry{name: "./etc/", typ: tar.TypeDir},
		entry{name: "./etc/hostname", body: "vm\n"},
		entry{name: "etc/link", typ: tar.TypeSymlink, link: "hostname"},
		entry{name: "top-link", typ: tar.TypeSymlink, link: "etc/../etc/hostname"},
		entry{name: "hard", typ: tar.TypeLink, link: "etc/hostname"},
		entry{name: "etc/hostname", body: "replaced\n"},
	)
	assert.NilError(t, extract(t, dir, data, 1<<20))
	want := []string{"etc/", "etc/hostname", "etc/link -> hostname", "hard", "lost+found/", "top-link -> etc/../etc/hostname"}
	assert.DeepEqual(t, listTree(t, dir), want)
	got, err := os.ReadFile(filepath.Join(dir, "etc", "link"))
	assert.NilError(t, err)
	assert.Equal(t, string(got), "replaced\n")
}

// TestExtractRefused: every escape attempt fails with an error naming the
// entry, and nothing at all is left in the volume.
func TestExtractRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		limit   int64
		wantErr string
	}{
		{name: "dot-dot", entries: []entry{{name: "../evil", body: "x"}}, wantErr: `"../evil": paths with ".." are not allowed`},
		{name: "dot-dot inside", entries: []entry{{name: "a/../../evil", body: "x"}}, wantErr: `paths with ".." are not allowed`},
		{name: "absolute path", entries: []entry{{name: "/etc/passwd", body: "x"}}, wantErr: "absolute paths are not allowed"},
		{name: "absolute symlink", entries: []entry{{name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"}}, wantErr: "points out of the volume"},
		{name: "relative symlink out", entries: []entry{{name: "a/l", typ: tar.TypeSymlink, link: "../../etc"}}, wantErr: "points out of the volume"},
		{name: "write through symlink", entries: []entry{
			{name: "l", typ: tar.TypeSymlink, link: "."},
			{name: "l/x", body: "x"},
		}, wantErr: `path goes through symlink "l"`},
		{name: "symlink chain out", entries: []entry{
			{name: "up", typ: tar.TypeSymlink, link: "."},
			{name: "up/x", typ: tar.TypeSymlink, link: "../y"},
		}, wantErr: `path goes through symlink "up"`},
		{name: "symlink through symlink to dot-dot", entries: []entry{
			{name: "x/y", typ: tar.TypeSymlink, link: ".."},
			{name: "z", typ: tar.TypeSymlink, link: "x/y/../.."},
		}, wantErr: `"z": symlink to "x/y/../.." resolves out of the volume`},
		{name: "symlink made to escape by a later one", entries: []entry{
			{name: "z", typ: tar.TypeSymlink, link: "x/y/../.."},
			{name: "x/y", typ: tar.TypeSymlink, link: ".."},
		}, wantErr: `"z": symlink to "x/y/../.." resolves out of the volume`},
		{name: "symlink chain of three", entries: []entry{
			{name: "b/c", typ: tar.TypeSymlink, link: ".."},
			{name: "a", typ: tar.TypeSymlink, link: "b/c"},
			{name: "d/e", typ: tar.TypeSymlink, link: "../a/.."},
		}, wantErr: `"d/e": symlink to "../a/.." resolves out of the volume`},
		{name: "symlink loop", entries: []entry{
			{name: "l1", typ: tar.TypeSymlink, link: "l2"},
			{name: "l2", typ: tar.TypeSymlink, link: "l1/x"},
		}, wantErr: "too many levels of symbolic links"},
		{name: "hard link out", entries: []entry{{name: "h", typ: tar.TypeLink, link: "/etc/shadow"}}, wantErr: "absolute paths are not allowed"},
		{name: "hard link dot-dot", entries: []entry{{name: "h", typ: tar.TypeLink, link: "../../etc/shadow"}}, wantErr: `paths with ".." are not allowed`},
		{name: "hard link to missing", entries: []entry{{name: "h", typ: tar.TypeLink, link: "nothing"}}, wantErr: "not a file extracted earlier"},
		{name: "char device", entries: []entry{{name: "null", typ: tar.TypeChar}}, wantErr: "device nodes are not allowed"},
		{name: "block device", entries: []entry{{name: "sda", typ: tar.TypeBlock}}, wantErr: "device nodes are not allowed"},
		{name: "fifo", entries: []entry{{name: "p", typ: tar.TypeFifo}}, wantErr: "FIFOs are not allowed"},
		{name: "bomb", entries: []entry{{name: "a", body: strings.Repeat("x", 600)}, {name: "b", body: strings.Repeat("x", 600)}},
			limit: 1000, wantErr: "archive is larger than the target"},
		{name: "staging name", entries: []entry{{name: ".datavolume-extract/x", body: "x"}}, wantErr: "reserved name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := makeTar(t, append([]entry{{name: "good", body: "fine"}}, tc.entries...)...)
			limit := tc.limit
			if limit == 0 {
				limit = 1 << 20
			}
			err := extract(t, dir, data, limit)
			assert.ErrorContains(t, err, tc.wantErr)
			if tc.limit == 0 {
				assert.ErrorIs(t, err, archive.ErrUnsafeEntry)
			} else {
				assert.ErrorIs(t, err, archive.ErrTooLarge)
				assert.Assert(t, !errors.Is(err, archive.ErrUnsafeEntry))
			}
			assert.DeepEqual(t, listTree(t, dir), []string(nil))
		})
	}
}

func TestExtractTruncated(t *testing.T) {
	dir := t.TempDir()
	data := makeTar(t, entry{name: "big", body: strings.Repeat("y", 10000)})
	err := extract(t, dir, data[:3000], 1<<20)
	assert.ErrorContains(t, err, "unexpected EOF")
	assert.Assert(t, cmp.Equal(listTree(t, dir), []string(nil)))
}

// FuzzExtract checks that no archive, however malformed, puts anything
// outside the volume.
func FuzzExtract(f *testing.F) {
	f.Add(makeTar(f, entry{name: "a/b", body: "x"}, entry{name: "a/l", typ: tar.TypeSymlink, link: "b"}))
	f.Add(makeTar(f, entry{name: "../x", body: "x"}))
	f.Add(makeTar(f, entry{name: "l", typ: tar.TypeSymlink, link: "/"}, entry{name: "l/x", body: "x"}))
	f.Add(makeTar(f, entry{name: "h", typ: tar.TypeLink, link: "../../x"}))
	f.Add(makeTar(f, entry{name: "x/y", typ: tar.TypeSymlink, link: ".."}, entry{name: "z", typ: tar.TypeSymlink, link: "x/y/../.."}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		vol := filepath.Join(parent, "volume")
		assert.NilError(t, os.Mkdir(vol, 0o755))
		// Extract without Commit: Commit only renames staged top-level
		// entries and syncs the filesystem, which is slow under fuzzing.
		if x, err := archive.Extract(context.Background(), bytes.NewReader(data), vol, 1<<20, logr.Discard()); err == nil {
			defer x.Abort()
		}
		entries, err := os.ReadDir(parent)
		assert.NilError(t, err)
		assert.Equal(t, len(entries), 1, "something was written outside the volume")
		staging := filepath.Join(vol, archive.StagingName)
		for _, p := range listTree(t, vol) {
			name, target, isLink := strings.Cut(p, " -> ")
			if !isLink {
				continue
			}
			assert.Assert(t, !filepath.IsAbs(target), "absolute symlink %s", p)
			// The kernel resolves every link inside the extracted tree.
			if got, err := filepath.EvalSymlinks(filepath.Join(vol, name)); err == nil {
				rel, err := filepath.Rel(staging, got)
				assert.Assert(t, err == nil && filepath.IsLocal(rel) || rel == ".", "symlink %s resolves to %s", p, got)
			}
		}
	})
}
