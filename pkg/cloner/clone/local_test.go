package clone_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/archive"
	"github.com/datavolume/datavolume/pkg/cloner/clone"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

// writeRandom writes size bytes of seeded random data.
func writeRandom(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	writeSparse(t, path, size, seed, [2]int64{0, size})
}

// writeSparse creates a size-byte file holding random data in the given
// [start, end) ranges and holes everywhere else. It returns the data bytes.
func writeSparse(t testing.TB, path string, size int64, seed uint64, ranges ...[2]int64) int64 {
	t.Helper()
	f, err := os.Create(path)
	assert.NilError(t, err)
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 1<<20)
	var data int64
	for _, r := range ranges {
		for off := r[0]; off < r[1]; off += int64(len(buf)) {
			p := buf[:min(int64(len(buf)), r[1]-off)]
			_, _ = rng.Read(p)
			_, err := f.WriteAt(p, off)
			assert.NilError(t, err)
		}
		data += r[1] - r[0]
	}
	assert.NilError(t, f.Truncate(size))
	return data
}

func newTarget(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "target")
	assert.NilError(t, os.Mkdir(dir, 0o755))
	return filepath.Join(dir, "disk.img")
}

func assertSameFile(t testing.TB, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	assert.NilError(t, err)
	w, err := os.ReadFile(want)
	assert.NilError(t, err)
	assert.Equal(t, len(g), len(w), "size of %s", got)
	assert.Assert(t, bytes.Equal(g, w), "%s differs from %s", got, want)
}

// isHole tells whether off lies in a hole of the file at path.
func isHole(t testing.TB, path string, off int64) bool {
	t.Helper()
	f, err := os.Open(path)
	assert.NilError(t, err)
	defer f.Close()
	data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return true // only holes from off to the end
	}
	assert.NilError(t, err)
	return data > off
}

func TestCopyDense(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	const size = 41<<20 + 1234 // neither whole buffers nor whole blocks
	writeRandom(t, src, size, 1)
	dst := newTarget(t)
	p := &progress.Counter{}
	assert.NilError(t, clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst, Progress: p}))
	assertSameFile(t, dst, src)
	assert.Equal(t, p.Percent(), 100.0)
	assert.Equal(t, p.Done(), int64(size))
	entries, err := os.ReadDir(filepath.Dir(dst))
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 1, "only disk.img: %v", entries)
}

// TestCopySparse: only the data is read and written; holes stay holes.
func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	data := writeSparse(t, src, 64<<20, 2,
		[2]int64{0, 1 << 20},
		[2]int64{13<<20 + 4096, 14<<20 + 4096}, // across a buffer boundary
		[2]int64{40 << 20, 41 << 20},
		[2]int64{63 << 20, 64 << 20})
	dst := newTarget(t)
	p := &progress.Counter{}
	assert.NilError(t, clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst, Progress: p}))
	assertSameFile(t, dst, src)
	assert.Assert(t, p.Total() < 2*data, "read %d bytes for %d of data", p.Total(), data)
	used := allocated(t, dst)
	assert.Assert(t, used >= data && used <= data+1<<20, "%d bytes allocated for %d of data", used, data)
	assert.Assert(t, isHole(t, dst, 2<<20) && isHole(t, dst, 50<<20))
}

// TestCopyZeroBlocksBecomeHoles: zeros written in the source (allocated,
// so inside a data extent) are not written to the target.
func TestCopyZeroBlocksBecomeHoles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	const size = 8 << 20
	writeRandom(t, src, size, 3)
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	assert.NilError(t, err)
	_, err = f.WriteAt(make([]byte, 2<<20), 4<<20)
	assert.NilError(t, err)
	_, err = f.WriteAt(make([]byte, 4096), 1<<20) // a lone zero block
	assert.NilError(t, err)
	assert.NilError(t, f.Sync())
	assert.NilError(t, f.Close())
	assert.Assert(t, allocated(t, src) >= size, "the source has no holes")

	dst := newTarget(t)
	assert.NilError(t, clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst}))
	assertSameFile(t, dst, src)
	assert.Assert(t, isHole(t, dst, 4<<20) && isHole(t, dst, 6<<20-4096) && isHole(t, dst, 1<<20))
	assert.Assert(t, !isHole(t, dst, 6<<20) && !isHole(t, dst, 1<<20+4096))
	assert.Assert(t, allocated(t, dst) <= size-2<<20, "%d bytes allocated", allocated(t, dst))
}

func TestCopyBlock(t *testing.T) {
	testenv.RequireTools(t, "losetup")
	const size = 24 << 20
	for _, tc := range []struct {
		name               string
		srcBlock, dstBlock bool
	}{
		{name: "file to block", dstBlock: true},
		{name: "block to file", srcBlock: true},
		{name: "block to block", srcBlock: true, dstBlock: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcFile := filepath.Join(t.TempDir(), "src.img")
			// Holes, zero runs and lone blocks: all must read back as
			// zeros over the old 0xAA bytes of a block target.
			testenv.WriteDisk(t, srcFile, size, 9)
			f, err := os.OpenFile(srcFile, os.O_WRONLY, 0)
			assert.NilError(t, err)
			assert.NilError(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 8<<20, 4<<20))
			assert.NilError(t, f.Close())
			src := srcFile
			if tc.srcBlock {
				src = testenv.Loop(t, srcFile)
			}
			dst := newTarget(t)
			if tc.dstBlock {
				dst = testenv.BlockDevice(t, 32<<20)
			}
			assert.NilError(t, clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst}))
			testenv.AssertSameDisk(t, dst, srcFile)
			if !tc.dstBlock {
				fi, err := os.Stat(dst)
				assert.NilError(t, err)
				assert.Equal(t, fi.Size(), int64(size))
				assert.Assert(t, allocated(t, dst) < size*3/4, "the copy is sparse")
			}
		})
	}
}

func TestCopyTooLarge(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.img")
	writeRandom(t, src, 8<<20, 4)
	dst := newTarget(t)
	err := clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst, Size: 4 << 20})
	assert.ErrorIs(t, err, sink.ErrTooLarge)
	assert.ErrorContains(t, err, "source has 8388608 bytes, target holds 4194304")
	assertEmptyDir(t, filepath.Dir(dst))
}

// TestCopyRefusesItself: copying a volume onto itself would destroy it.
func TestCopyRefusesItself(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	writeRandom(t, src, 4<<20, 5)
	want := filepath.Join(t.TempDir(), "want.img")
	writeRandom(t, want, 4<<20, 5)
	link := filepath.Join(t.TempDir(), "disk.img")
	assert.NilError(t, os.Link(src, link))

	for _, target := range []string{src, link} {
		err := clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: target})
		assert.ErrorContains(t, err, "are the same file")
		assertSameFile(t, src, want)
	}

	t.Run("two nodes of one device", func(t *testing.T) {
		testenv.RequireTools(t, "losetup")
		dev := testenv.BlockDevice(t, 4<<20)
		var st unix.Stat_t
		assert.NilError(t, unix.Stat(dev, &st))
		alias := filepath.Join(t.TempDir(), "alias")
		assert.NilError(t, unix.Mknod(alias, unix.S_IFBLK|0o600, int(st.Rdev)))
		err := clone.Copy(context.Background(), clone.LocalOptions{Source: dev, Target: alias})
		assert.ErrorContains(t, err, "are the same device")
		head := make([]byte, 4096)
		f, err := os.Open(dev)
		assert.NilError(t, err)
		defer f.Close()
		_, err = f.ReadAt(head, 0)
		assert.NilError(t, err)
		assert.Assert(t, bytes.Equal(head, bytes.Repeat([]byte{0xaa}, len(head))), "the device was not touched")
	})
}

func TestCopyCancelled(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.img")
	const size = 128 << 20
	writeRandom(t, src, size, 6)
	dst := newTarget(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &progress.Counter{}
	go func() { // cancel once the first buffer is written
		for p.Done() == 0 && ctx.Err() == nil {
			runtime.Gosched()
		}
		cancel()
	}()
	err := clone.Copy(ctx, clone.LocalOptions{Source: src, Target: dst, Progress: p})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Assert(t, p.Done() > 0 && p.Done() < size, "stopped mid-copy, at %d bytes", p.Done())
	assertEmptyDir(t, filepath.Dir(dst))
}

// makeTree fills dir with regular files, an empty and a nested directory
// and a symlink.
func makeTree(t testing.TB, dir string) {
	t.Helper()
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o750))
	assert.NilError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o700))
	writeRandom(t, filepath.Join(dir, "big.bin"), 3<<20+17, 7)
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "sub", "notes.txt"), []byte("hello\n"), 0o640))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "sub", "deeper", "empty.txt"), nil, 0o600))
	assert.NilError(t, os.Symlink("../big.bin", filepath.Join(dir, "sub", "link")))
}

// assertSameTree compares two trees entry by entry: type, permissions,
// file contents and symlink targets.
func assertSameTree(t testing.TB, got, want string) {
	t.Helper()
	list := func(root string) map[string]fs.FileInfo {
		entries := map[string]fs.FileInfo{}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			if rel != "." {
				entries[rel], err = d.Info()
			}
			return err
		})
		assert.NilError(t, err)
		return entries
	}
	g, w := list(got), list(want)
	assert.Equal(t, len(g), len(w), "entries: got %v, want %v", g, w)
	for rel, wi := range w {
		gi, ok := g[rel]
		assert.Assert(t, ok, "%s is missing", rel)
		assert.Equal(t, gi.Mode(), wi.Mode(), rel)
		switch {
		case wi.Mode().IsRegular():
			assertSameFile(t, filepath.Join(got, rel), filepath.Join(want, rel))
		case wi.Mode()&fs.ModeSymlink != 0:
			gl, err := os.Readlink(filepath.Join(got, rel))
			assert.NilError(t, err)
			wl, err := os.Readlink(filepath.Join(want, rel))
			assert.NilError(t, err)
			assert.Equal(t, gl, wl, rel)
		}
	}
}

func TestCopyArchive(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	p := &progress.Counter{}
	assert.NilError(t, clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst, Kind: clone.Archive, Progress: p}))
	assertSameTree(t, dst, src)
	const files = 3<<20 + 17 + len("hello\n")
	assert.Equal(t, p.Total(), int64(files))
	assert.Equal(t, p.Done(), int64(files))
}

func TestCopyArchiveRefused(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src)
	want := t.TempDir()
	makeTree(t, want)

	t.Run("too large", func(t *testing.T) {
		dst := t.TempDir()
		err := clone.Copy(context.Background(), clone.LocalOptions{Source: src, Target: dst, Kind: clone.Archive, Size: 1 << 20})
		assert.ErrorIs(t, err, archive.ErrTooLarge)
		assert.ErrorContains(t, err, "target holds "+strconv.Itoa(1<<20))
		assertEmptyDir(t, dst)
	})

	for _, tc := range []struct{ name, source, target, wantErr string }{
		{"same directory", src, src, "are the same directory"},
		{"target inside source", src, filepath.Join(src, "sub", "deeper"), "is inside source"},
		{"source inside target", filepath.Join(src, "sub"), src, "is inside target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := clone.Copy(context.Background(), clone.LocalOptions{Source: tc.source, Target: tc.target, Kind: clone.Archive})
			assert.ErrorContains(t, err, tc.wantErr)
			assertSameTree(t, src, want)
		})
	}
}
