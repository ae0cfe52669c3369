package importer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/checksum"
	"github.com/datavolume/datavolume/pkg/cloner/httpsource"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
)

// twoFaced serves download to plain GETs and, to range requests,
// ranged(offset, length) of the same size: a server that shows the
// importer one image and qemu-img another.
func twoFaced(t *testing.T, download []byte, ranged func(off, n int64) []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rng := r.Header.Get("Range")
		if rng == "" {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(download))
			return
		}
		from, to, ok := strings.Cut(strings.TrimPrefix(rng, "bytes="), "-")
		start, err1 := strconv.ParseInt(from, 10, 64)
		end, err2 := strconv.ParseInt(to, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(download))
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(ranged(start, end-start+1)))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/image.qcow2"
}

func importURL(t *testing.T, url string, o importer.Options) error {
	t.Helper()
	src, err := httpsource.New(httpsource.Options{URL: url, RetryWait: 10 * time.Millisecond, Retries: 1, Log: logr.Discard()})
	assert.NilError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := src.Open(ctx)
	if err != nil {
		return err
	}
	o.ContentType = importer.KubeVirt
	o.Log = logr.Discard()
	return importer.Import(ctx, stream, o)
}

// padTo appends zeros up to n bytes (qemu ignores bytes past an image's
// last cluster).
func padTo(b []byte, n int) []byte { return append(b, make([]byte, n-len(b))...) }

// A server that answers range requests with another qcow2 header than the
// one the download showed (here: one naming a local secret as external
// data file) must not get qemu-img to read that file into the volume: the
// import fails, and the secret appears nowhere in the target directory.
func TestImportQcow2RangeHeaderDiffers(t *testing.T) {
	testenv.RequireTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	secret := filepath.Join(dir, "token")
	evil := filepath.Join(dir, "evil.qcow2")
	good := filepath.Join(dir, "good.qcow2")
	testenv.Shell(t, `
		qemu-img create -q -f qcow2 -o data_file=`+secret+` `+evil+` 1M
		qemu-io -f qcow2 -c 'write -P 0x11 0 256k' `+evil+` >/dev/null
		qemu-img create -q -f qcow2 `+dir+`/plain.qcow2 1M
		qemu-io -f qcow2 -c 'write -P 0x22 0 256k' `+dir+`/plain.qcow2 >/dev/null
		qemu-img convert -c -O qcow2 `+dir+`/plain.qcow2 `+good)
	// The importer pod's service account token, say.
	token := bytes.Repeat([]byte("SECRET-TOKEN-0123456789abcdef\n"), 40000)[:1<<20]
	assert.NilError(t, os.WriteFile(secret, token, 0o600))
	evilBytes, err := os.ReadFile(evil)
	assert.NilError(t, err)
	goodBytes, err := os.ReadFile(good)
	assert.NilError(t, err)
	size := max(len(evilBytes), len(goodBytes))
	evilBytes, goodBytes = padTo(evilBytes, size), padTo(goodBytes, size)

	for _, tc := range []struct {
		name   string
		ranged func(off, n int64) []byte
	}{
		// The compressed image maps as "to be converted"; the large
		// reads of the conversion then get the other header.
		{"only-large-ranges", func(off, n int64) []byte {
			if n >= 128<<10 {
				return evilBytes
			}
			return goodBytes
		}},
		{"every-range", func(off, n int64) []byte { return evilBytes }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := twoFaced(t, goodBytes, tc.ranged)
			target := filepath.Join(t.TempDir(), "disk.img")
			err := importURL(t, url, importer.Options{Target: target, TargetSize: 4 << 20})
			entries, _ := os.ReadDir(filepath.Dir(target))
			for _, e := range entries {
				data, err := os.ReadFile(filepath.Join(filepath.Dir(target), e.Name()))
				assert.NilError(t, err)
				assert.Assert(t, !bytes.Contains(data, []byte("SECRET-TOKEN")), "the secret was imported into %s", e.Name())
			}
			assert.ErrorIs(t, err, importer.ErrSourceInconsistent)
			assert.ErrorContains(t, err, "header")
			assertNothingLeft(t, filepath.Dir(target))
		})
	}

	// The two faces agree: the image imports (the test server is sound).
	url := twoFaced(t, goodBytes, func(off, n int64) []byte { return goodBytes })
	target := filepath.Join(t.TempDir(), "disk.img")
	assert.NilError(t, importURL(t, url, importer.Options{Target: target, TargetSize: 4 << 20}))
	testenv.AssertSameDisk(t, target, testenv.RawOf(t, good))
}

// With a checksum, the qcow2 layout must come from the checksummed bytes:
// a server whose download matches the checksum but whose range answers
// carry altered L2 tables (the first data cluster unmapped, so it would
// read as zeros) gets the import refused, or else the volume must be
// exactly qemu-img's conversion of the downloaded file.
func TestImportQcow2ChecksumCoversLayout(t *testing.T) {
	testenv.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	image := filepath.Join(dir, "disk.qcow2")
	testenv.WriteDisk(t, raw, 4<<20, 7)
	testenv.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, image)
	real, err := os.ReadFile(image)
	assert.NilError(t, err)
	sum := sha256.Sum256(real)

	be := binary.BigEndian
	l1 := be.Uint64(real[40:])
	l2 := be.Uint64(real[l1:]) & 0x00fffffffffffe00
	assert.Assert(t, be.Uint64(real[l2:]) != 0, "guest cluster 0 holds data")
	altered := bytes.Clone(real)
	clear(altered[l2 : l2+8])

	for _, scratch := range []bool{false, true} {
		t.Run("scratch="+strconv.FormatBool(scratch), func(t *testing.T) {
			url := twoFaced(t, real, func(off, n int64) []byte { return altered })
			target := filepath.Join(t.TempDir(), "disk.img")
			o := importer.Options{Target: target, TargetSize: 4 << 20}
			o.Checksum, err = checksum.Parse("sha256:" + hex.EncodeToString(sum[:]))
			assert.NilError(t, err)
			if scratch {
				o.ScratchDir = t.TempDir()
			}
			err := importURL(t, url, o)
			if err == nil {
				testenv.AssertSameDisk(t, target, raw)
				return
			}
			assert.ErrorIs(t, err, importer.ErrSourceInconsistent)
			assertNothingLeft(t, filepath.Dir(target))
		})
	}
}

// A download cut short is an error, not a smaller image, when the server
// gave no Content-Length (the body ends with the connection) or sent a
// chunked body without its terminator; on a block device nothing that
// looks like the start of a disk is left behind.
func TestImportCutShortDownloadFails(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	testenv.WriteDisk(t, raw, 4<<20, 3)
	image, err := os.ReadFile(raw)
	assert.NilError(t, err)
	half := image[:2<<20]
	for _, tc := range []struct {
		name, head string
		body       []byte
		wantErr    string
	}{
		{"no-content-length", "HTTP/1.1 200 OK\r\nConnection: close", half, "without Content-Length or chunked encoding"},
		{"chunked-without-terminator", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
			append(fmt.Appendf(nil, "%x\r\n", len(half)), append(half, "\r\n"...)...), "unexpected EOF"},
	} {
		for _, block := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/block=%v", tc.name, block), func(t *testing.T) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					conn, buf, err := w.(http.Hijacker).Hijack()
					if err != nil {
						return
					}
					defer conn.Close()
					_, _ = buf.WriteString(tc.head + "\r\n\r\n")
					_, _ = buf.Write(tc.body)
					_ = buf.Flush()
				}))
				defer srv.Close()
				target := filepath.Join(t.TempDir(), "disk.img")
				if block {
					target = testenv.BlockDevice(t, 4<<20)
				}
				err := importURL(t, srv.URL+"/disk.raw", importer.Options{Target: target, TargetSize: 4 << 20})
				assert.ErrorContains(t, err, tc.wantErr)
				if !block {
					assertNothingLeft(t, filepath.Dir(target))
					return
				}
				got, err := os.ReadFile(target)
				assert.NilError(t, err)
				assert.Assert(t, bytes.Equal(got[:1<<20], make([]byte, 1<<20)), "the first MiB of the block device is not zeroed")
			})
		}
	}
}
