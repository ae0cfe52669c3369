package importer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/datavolume/datavolume/pkg/cloner/checksum"
	"github.com/datavolume/datavolume/pkg/cloner/httpsource"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/qcow2"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
)

const diskSize = 16 << 20

// images holds the test images, made once with the real tools.
var images struct {
	once sync.Once
	dir  string
	raw  string // reference
}

func imageDir(t *testing.T) string {
	t.Helper()
	images.once.Do(func() {
		testenv.RequireTools(t, "qemu-img", "gzip", "xz", "zstd", "tar")
		dir, err := os.MkdirTemp("", "importer-images-")
		assert.NilError(t, err)
		images.dir = dir
		raw := filepath.Join(dir, "disk.raw")
		testenv.WriteDisk(t, raw, diskSize, 1)
		testenv.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(dir, "disk.qcow2"))
		testenv.Shell(t, fmt.Sprintf(`cd %s
			gzip -k -1 disk.raw && xz -k -0 -T1 disk.raw && zstd -q -k disk.raw
			gzip -k -1 disk.qcow2 && xz -k -0 -T1 disk.qcow2 && zstd -q -k disk.qcow2
			xz -c -0 disk.raw.gz > disk.raw.gz.xz
			qemu-img create -q -f qcow2 -b disk.qcow2 -F qcow2 backed.qcow2
			qemu-img convert -c -f raw -O qcow2 disk.raw compressed.qcow2
			qemu-img create -q -f qcow2 reversed.qcow2 16M
			qemu-io -f qcow2 -c 'write -P 0x22 8M 1M' -c 'write -P 0x11 1M 1M' reversed.qcow2 >/dev/null
			cp disk.qcow2 rewritten.qcow2
			qemu-io -f qcow2 -c 'write -z 0 64k' -c 'write -P 0x33 2M 100k' -c 'write -z -u 6M 1M' rewritten.qcow2 >/dev/null
			qemu-img create -q -f qcow2 -o cluster_size=4096 small-clusters.qcow2 8M
			qemu-io -f qcow2 -c 'write -P 0x44 4k 12k' -c 'write -P 0x55 1M 4k' small-clusters.qcow2 >/dev/null
			qemu-img create -q -f qcow2 big.qcow2 64M
			truncate -s 64M big.raw
			head -c 100M /dev/zero | gzip -1 > bomb.raw.gz
			head -c 100M /dev/zero | xz -0 -T1 > bomb.raw.xz
			head -c 5M disk.raw.gz > truncated.raw.gz
			cp disk.qcow2 bad-l1.qcow2 && printf '\000\000\000\000\000\000\022\064' | dd of=bad-l1.qcow2 bs=1 seek=40 conv=notrunc status=none
			mkdir -p tree/sub && echo hello > tree/sub/file.txt && ln -s sub/file.txt tree/link && ln tree/sub/file.txt tree/hard
			tar -C tree -cf archive.tar . && gzip -k archive.tar`, dir))
		images.raw = raw
	})
	if images.dir == "" {
		t.Fatal("test images could not be made")
	}
	return images.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if images.dir != "" {
		os.RemoveAll(images.dir)
	}
	os.Exit(code)
}

type importCase struct {
	file        string
	contentType importer.ContentType
	target      string
	targetSize  int64
	checksum    string
	scratch     bool
	wrap        func(http.Handler) http.Handler
	username    string
	log         logr.Logger
	progress    *progress.Counter
}

func runImport(t *testing.T, c importCase) error {
	t.Helper()
	dir := imageDir(t)
	srv := testenv.FileServer(t, dir, c.wrap)
	user := srv.Username
	if c.username != "" {
		user = c.username
	}
	src, err := httpsource.New(httpsource.Options{
		URL: srv.URL + "/" + c.file, CAFile: srv.CAFile, Username: user, Password: srv.Password,
		RetryWait: 10 * time.Millisecond, IdleTimeout: 500 * time.Millisecond, Retries: 3, Log: c.log,
	})
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := src.Open(ctx)
	if err != nil {
		return err
	}
	o := importer.Options{
		ContentType: c.contentType, Target: c.target, TargetSize: c.targetSize,
		Progress: c.progress, Log: c.log,
	}
	if o.ContentType == "" {
		o.ContentType = importer.KubeVirt
	}
	if o.Progress == nil {
		o.Progress = &progress.Counter{}
	}
	if c.scratch {
		o.ScratchDir = t.TempDir()
	}
	if c.checksum != "" {
		o.Checksum, err = checksum.Parse(c.checksum)
		assert.NilError(t, err)
	}
	return importer.Import(ctx, stream, o)
}

// TestImportFormats imports every supported format over HTTPS with basic
// auth and a custom CA, into a file and into a block device, and compares
// the result with qemu-img's own conversion.
func TestImportFormats(t *testing.T) {
	dir := imageDir(t)
	for _, file := range []string{
		"disk.raw", "disk.raw.gz", "disk.raw.xz", "disk.raw.zst", "disk.raw.gz.xz",
		"disk.qcow2", "disk.qcow2.gz", "disk.qcow2.xz", "disk.qcow2.zst",
	} {
		for _, block := range []bool{false, true} {
			name := file + "/file"
			if block {
				name = file + "/block"
			}
			t.Run(name, func(t *testing.T) {
				target := filepath.Join(t.TempDir(), "disk.img")
				targetSize := int64(32 << 20)
				if block {
					target = testenv.BlockDevice(t, 24<<20)
					targetSize = 0
				}
				err := runImport(t, importCase{file: file, target: target, targetSize: targetSize, scratch: true})
				assert.NilError(t, err)
				testenv.AssertSameDisk(t, target, images.raw)
				if !block {
					fi, err := os.Stat(target)
					assert.NilError(t, err)
					assert.Equal(t, fi.Size(), targetSize, "a file target takes the requested size")
					entries, err := os.ReadDir(filepath.Dir(target))
					assert.NilError(t, err)
					assert.Equal(t, len(entries), 1, "only disk.img is left")
				}
			})
		}
	}
	_ = dir
}

func TestImportFileIsSparse(t *testing.T) {
	for _, file := range []string{"disk.raw.gz", "disk.qcow2"} {
		t.Run(file, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			assert.NilError(t, runImport(t, importCase{file: file, target: target, targetSize: 1 << 30}))
			var used int64
			fi, err := os.Stat(target)
			assert.NilError(t, err)
			used = blocks(t, target)
			assert.Assert(t, used < diskSize*3/4, "%d bytes allocated for a 16 MiB half-empty image", used)
			assert.Equal(t, fi.Size(), int64(1<<30))
		})
	}
}

// TestImportChecksum verifies the digest over the downloaded bytes.
func TestImportChecksum(t *testing.T) {
	dir := imageDir(t)
	good := testenv.SHA256(t, filepath.Join(dir, "disk.raw.gz"))
	for _, tc := range []struct {
		name, file, checksum string
		noScratch            bool // a qcow2 image must then be streamed
		wantErr              string
	}{
		{name: "gzip matches", file: "disk.raw.gz", checksum: good},
		{name: "qcow2 mismatch", file: "disk.qcow2", checksum: good, wantErr: "checksum mismatch"},
		{name: "qcow2 mismatch, streamed", file: "disk.qcow2", checksum: good, noScratch: true, wantErr: "checksum mismatch"},
		{name: "qcow2 matches, streamed", file: "disk.qcow2", checksum: testenv.SHA256(t, filepath.Join(dir, "disk.qcow2")), noScratch: true},
		{name: "compressed qcow2 matches, staged", file: "compressed.qcow2", checksum: testenv.SHA256(t, filepath.Join(dir, "compressed.qcow2"))},
		{name: "raw mismatch", file: "disk.raw", checksum: good, wantErr: "checksum mismatch"},
		{name: "md5 mismatch", file: "disk.raw.gz", checksum: "md5:00000000000000000000000000000000", wantErr: "checksum mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			err := runImport(t, importCase{file: tc.file, target: target, targetSize: diskSize, checksum: tc.checksum, scratch: !tc.noScratch})
			if tc.wantErr == "" {
				assert.NilError(t, err)
				testenv.AssertSameDisk(t, target, images.raw)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
			assertNothingLeft(t, filepath.Dir(target))
		})
	}
}

// TestImportRefused covers images that must fail with a clear error and
// leave nothing that looks like a finished import.
func TestImportRefused(t *testing.T) {
	for _, tc := range []struct {
		name       string
		file       string
		targetSize int64
		wantErr    string
		wantIs     error // the sentinel the exit code is chosen by
	}{
		{name: "qcow2 with backing file", file: "backed.qcow2", wantErr: "backing file", wantIs: qcow2.ErrUnsafe},
		{name: "qcow2 larger than target", file: "big.qcow2", targetSize: 32 << 20,
			wantErr: "image is larger than the target: the image needs 67108864 bytes (64 MiB), the target holds 33554432 bytes (32 MiB)", wantIs: sink.ErrTooLarge},
		{name: "raw larger than target", file: "big.raw", targetSize: 32 << 20, wantErr: "the image needs 67108864 bytes (64 MiB), the target holds 33554432", wantIs: sink.ErrTooLarge},
		{name: "gzip bomb", file: "bomb.raw.gz", targetSize: 32 << 20, wantErr: "image is larger than the target", wantIs: sink.ErrTooLarge},
		{name: "xz bomb", file: "bomb.raw.xz", targetSize: 32 << 20, wantErr: "image is larger than the target", wantIs: sink.ErrTooLarge},
		{name: "truncated gzip", file: "truncated.raw.gz", targetSize: 32 << 20, wantErr: "unexpected EOF", wantIs: io.ErrUnexpectedEOF},
		{name: "tar for kubevirt content", file: "archive.tar", targetSize: 32 << 20, wantErr: "content type archive", wantIs: importer.ErrUnsupportedFormat},
		{name: "missing file", file: "nope.raw", targetSize: 32 << 20, wantErr: "HTTP 404 Not Found", wantIs: &httpsource.StatusError{Code: 404}},
		{name: "bad qcow2 tables", file: "bad-l1.qcow2", targetSize: 32 << 20, wantErr: "invalid qcow2 image: qemu-img convert: Could not open the image: Active L1 table offset invalid", wantIs: qcow2.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			err := runImport(t, importCase{file: tc.file, target: target, targetSize: tc.targetSize, scratch: true})
			assert.ErrorContains(t, err, tc.wantErr)
			if se, ok := tc.wantIs.(*httpsource.StatusError); ok {
				var got *httpsource.StatusError
				assert.Assert(t, errors.As(err, &got), "%v", err)
				assert.Equal(t, got.Code, se.Code)
			} else {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			assertNothingLeft(t, filepath.Dir(target))
		})
	}
}

// TestImportNeedsScratch: the qcow2 images that can only be staged fail
// with ErrNeedsScratch when no scratch space is given, saying why, and
// leave nothing behind; a qcow2 image whose tables qemu-img cannot read
// fails its check whether it is converted over the network or staged.
func TestImportNeedsScratch(t *testing.T) {
	dir := imageDir(t)
	noRanges := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			w.Header().Set("Accept-Ranges", "none")
			next.ServeHTTP(noRangesWriter{w}, r)
		})
	}
	for _, tc := range []struct {
		name, file, checksum string
		wrap                 func(http.Handler) http.Handler
		wantErr              string
	}{
		{name: "gzip-compressed qcow2", file: "disk.qcow2.gz", wantErr: "it is gzip-compressed"},
		{name: "xz-compressed qcow2", file: "disk.qcow2.xz", wantErr: "it is xz-compressed"},
		{name: "server without ranges", file: "disk.qcow2", wrap: noRanges, wantErr: "the server does not support range requests"},
		{name: "converted with a checksum", file: "compressed.qcow2", checksum: testenv.SHA256(t, filepath.Join(dir, "compressed.qcow2")),
			wantErr: "the checksum verified first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			err := runImport(t, importCase{file: tc.file, target: target, targetSize: diskSize, checksum: tc.checksum, wrap: tc.wrap})
			assert.ErrorIs(t, err, importer.ErrNeedsScratch)
			assert.ErrorContains(t, err, tc.wantErr)
			assert.ErrorContains(t, err, "pass --scratch")
			assertNothingLeft(t, filepath.Dir(target))
		})
	}
	for _, staged := range []bool{false, true} {
		t.Run(fmt.Sprintf("bad tables/staged=%v", staged), func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			c := importCase{file: "bad-l1.qcow2", target: target, targetSize: diskSize}
			want := "invalid qcow2 image: qemu-img convert: Could not open the image: Active L1 table offset invalid"
			if staged {
				c.wrap, c.scratch = noRanges, true
				want = "invalid qcow2 image: qemu-img map: Could not open the image: Active L1 table offset invalid"
			}
			err := runImport(t, c)
			assert.ErrorIs(t, err, qcow2.ErrInvalid)
			assert.Error(t, err, want)
			assertNothingLeft(t, filepath.Dir(target))
		})
	}
}

// noRangesWriter drops the Accept-Ranges header http.FileServer sets.
type noRangesWriter struct{ http.ResponseWriter }

func (w noRangesWriter) WriteHeader(code int) {
	w.Header().Del("Accept-Ranges")
	w.ResponseWriter.WriteHeader(code)
}

func (w noRangesWriter) Write(p []byte) (int, error) {
	w.Header().Del("Accept-Ranges")
	return w.ResponseWriter.Write(p)
}

// TestImportRefusedBlock checks that a refused image leaves no old data
// that looks like a disk at the head of a block device.
func TestImportRefusedBlock(t *testing.T) {
	dev := testenv.BlockDevice(t, 8<<20)
	err := runImport(t, importCase{file: "disk.raw.gz", target: dev})
	assert.Assert(t, errors.Is(err, errTooLarge) || strings.Contains(err.Error(), "larger than the target"), "%v", err)
	head := make([]byte, 1<<20)
	f, err := os.Open(dev)
	assert.NilError(t, err)
	defer f.Close()
	_, err = f.ReadAt(head, 0)
	assert.NilError(t, err)
	assert.Assert(t, is.DeepEqual(head, make([]byte, 1<<20)), "the first MiB must read as zeros")
}

var errTooLarge = errors.New("image is larger than the target")

func TestImportArchive(t *testing.T) {
	for _, file := range []string{"archive.tar", "archive.tar.gz"} {
		t.Run(file, func(t *testing.T) {
			target := t.TempDir()
			assert.NilError(t, runImport(t, importCase{file: file, contentType: importer.Archive, target: target, targetSize: 1 << 20}))
			data, err := os.ReadFile(filepath.Join(target, "sub", "file.txt"))
			assert.NilError(t, err)
			assert.Equal(t, string(data), "hello\n")
			link, err := os.Readlink(filepath.Join(target, "link"))
			assert.NilError(t, err)
			assert.Equal(t, link, "sub/file.txt")
			data, err = os.ReadFile(filepath.Join(target, "hard"))
			assert.NilError(t, err)
			assert.Equal(t, string(data), "hello\n")
			_, err = os.Stat(filepath.Join(target, ".datavolume-extract"))
			assert.Assert(t, os.IsNotExist(err), "staging directory is removed")
		})
	}
	t.Run("raw image is refused", func(t *testing.T) {
		err := runImport(t, importCase{file: "disk.raw", contentType: importer.Archive, target: t.TempDir(), targetSize: 1 << 30})
		assert.ErrorContains(t, err, "archive content must be a tar archive")
	})
}

// TestImportQcow2Layouts imports qcow2 images over HTTP with range
// requests: those whose data qemu-img maps in guest order are streamed in
// one pass, the others (compressed, written out of order) are converted by
// qemu-img; both must equal qemu-img's own conversion, on a file and on a
// block device.
func TestImportQcow2Layouts(t *testing.T) {
	dir := imageDir(t)
	for _, tc := range []struct {
		file     string
		streamed bool
	}{
		{file: "disk.qcow2", streamed: true},
		{file: "rewritten.qcow2", streamed: true}, // zero clusters, data rewritten in place
		{file: "small-clusters.qcow2", streamed: true},
		{file: "compressed.qcow2", streamed: false},
		{file: "reversed.qcow2", streamed: false}, // guest 8M stored before guest 1M
	} {
		want := testenv.RawOf(t, filepath.Join(dir, tc.file))
		for _, block := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/block=%v", tc.file, block), func(t *testing.T) {
				log, captured := testenv.NewLogger()
				target := filepath.Join(t.TempDir(), "disk.img")
				targetSize := int64(32 << 20)
				if block {
					target = testenv.BlockDevice(t, 32<<20)
					// Garbage where the image has zeros must not survive.
					testenv.Shell(t, "head -c 32M /dev/urandom > "+target)
					targetSize = 0
				}
				assert.NilError(t, runImport(t, importCase{file: tc.file, target: target, targetSize: targetSize, log: log}))
				testenv.AssertSameDisk(t, target, want)
				assert.Equal(t, strings.Contains(captured.String(), "streaming qcow2 data runs"), tc.streamed, "%s", captured)
				assert.Equal(t, strings.Contains(captured.String(), "converting it with qemu-img"), !tc.streamed, "%s", captured)
			})
		}
	}
}

// A streamed qcow2 import counts the bytes it reads: up to the last data
// run, or the whole file when a checksum needs every byte; either way it
// ends at 100%.
func TestImportQcow2StreamProgress(t *testing.T) {
	dir := imageDir(t)
	image, err := os.ReadFile(filepath.Join(dir, "disk.qcow2"))
	assert.NilError(t, err)
	// 1 MiB after the last cluster, which qemu ignores and we need not read.
	trailing := append(image, bytes.Repeat([]byte{0xff}, 1<<20)...)
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "trailing.qcow2"), trailing, 0o644))
	for _, withChecksum := range []bool{false, true} {
		target := filepath.Join(t.TempDir(), "disk.img")
		c := importCase{file: "trailing.qcow2", target: target, targetSize: diskSize, progress: &progress.Counter{}}
		if withChecksum {
			c.checksum = testenv.SHA256(t, filepath.Join(dir, "trailing.qcow2"))
		}
		assert.NilError(t, runImport(t, c))
		testenv.AssertSameDisk(t, target, images.raw)
		total := c.progress.Total()
		if withChecksum {
			assert.Equal(t, total, int64(len(trailing)))
		} else {
			assert.Equal(t, total, int64(len(image)), "read up to the last data run")
		}
		assert.Assert(t, c.progress.Done() >= total, "done %d of %d", c.progress.Done(), total)
		assert.Equal(t, c.progress.Percent(), 100.0)
	}
}

// A download cut in the middle of the data runs, which cannot be resumed,
// fails the import and leaves nothing behind; so does an image cut short,
// whose tables point past its end.
func TestImportQcow2StreamFails(t *testing.T) {
	dir := imageDir(t)
	full, err := os.ReadFile(filepath.Join(dir, "disk.qcow2"))
	assert.NilError(t, err)
	half := len(full) / 2
	// The image's tables (its first 320 KiB) are served; the download
	// stops half-way, and every range beyond that fails too.
	cut := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start, _, ranged := strings.Cut(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-")
			if !ranged {
				w.Header().Set("Content-Length", strconv.Itoa(len(full)))
				w.Header().Set("Accept-Ranges", "bytes")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(full[:half])
				panic(http.ErrAbortHandler)
			}
			if n, err := strconv.Atoi(start); err != nil || n >= half {
				http.Error(w, "gone", http.StatusNotFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	target := filepath.Join(t.TempDir(), "disk.img")
	err = runImport(t, importCase{file: "disk.qcow2", target: target, targetSize: diskSize, wrap: cut})
	assert.ErrorContains(t, err, "reading source")
	assertNothingLeft(t, filepath.Dir(target))

	assert.NilError(t, os.WriteFile(filepath.Join(dir, "truncated.qcow2"), full[:half], 0o644))
	// A server without ranges makes the importer stage the image in
	// scratch space; qemu-img maps the staged file there.
	noRanges := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(half))
			_, _ = w.Write(full[:half])
		})
	}
	for _, staged := range []bool{false, true} {
		log, captured := testenv.NewLogger()
		c := importCase{file: "truncated.qcow2", target: target, targetSize: diskSize, log: log}
		if staged {
			c.wrap, c.scratch = noRanges, true
		}
		err = runImport(t, c)
		assert.ErrorContains(t, err, "qcow2 image is truncated")
		assert.Equal(t, strings.Contains(captured.String(), "staging qcow2 in scratch space"), staged, "%s", captured)
		assertNothingLeft(t, filepath.Dir(target))
	}
}

// TestImportCredentialsNeverLogged captures every log line of an import,
// a failed one included, and looks for the password.
func TestImportCredentialsNeverLogged(t *testing.T) {
	log, captured := testenv.NewLogger()
	target := filepath.Join(t.TempDir(), "disk.img")
	assert.NilError(t, runImport(t, importCase{file: "disk.qcow2", target: target, targetSize: diskSize, log: log}))
	err := runImport(t, importCase{file: "disk.raw", target: target, targetSize: diskSize, log: log, username: "wrong"})
	assert.ErrorContains(t, err, "401")
	assert.Assert(t, captured.String() != "", "the import logged something")
	assert.Assert(t, !strings.Contains(captured.String(), "s3cret-Pa55"), "password in logs:\n%s", captured)
	assert.Assert(t, !strings.Contains(err.Error(), "s3cret-Pa55"))
}

func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	assert.NilError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Assert(t, is.Len(names, 0), "left behind: %v", names)
}

func blocks(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(path, &st))
	return st.Blocks * 512
}
