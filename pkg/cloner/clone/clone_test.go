package clone_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/certs"
	"github.com/datavolume/datavolume/pkg/cloner/clone"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
)

type tlsPair struct{ server, client *tls.Config }

func newTLS(t testing.TB) tlsPair {
	t.Helper()
	files, err := certs.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"}, time.Hour)
	assert.NilError(t, err)
	server, err := certs.ServerConfig(files.ServerCert, files.ServerKey, files.CA)
	assert.NilError(t, err)
	client, err := certs.ClientConfig(files.ClientCert, files.ClientKey, files.CA, "127.0.0.1")
	assert.NilError(t, err)
	return tlsPair{server, client}
}

type result struct{ sendErr, recvErr error }

// runClone runs a target and a source on loopback and returns both results.
func runClone(t testing.TB, tp tlsPair, src clone.SourceOptions, dst clone.TargetOptions) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	dst.TLS = tp.server
	recv := make(chan error, 1)
	go func() { recv <- clone.Receive(ctx, l, dst) }()
	src.TLS, src.Address = tp.client, l.Addr().String()
	var r result
	r.sendErr = clone.Send(ctx, src)
	r.recvErr = <-recv
	return r
}

func TestCloneDisk(t *testing.T) {
	testenv.RequireTools(t, "losetup")
	tp := newTLS(t)
	const size = 24 << 20
	for _, tc := range []struct {
		name         string
		srcBlock     bool
		dstBlock     bool
		targetSize   int64
		wantFileSize int64
	}{
		{name: "file to file", targetSize: 0, wantFileSize: size},
		{name: "file to larger file", targetSize: 40 << 20, wantFileSize: 40 << 20},
		{name: "file to block", dstBlock: true},
		{name: "block to file", srcBlock: true, wantFileSize: size},
		{name: "block to block", srcBlock: true, dstBlock: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			srcFile := filepath.Join(dir, "src.img")
			testenv.WriteDisk(t, srcFile, size, 7)
			src := srcFile
			if tc.srcBlock {
				src = testenv.Loop(t, srcFile)
			}
			dst := filepath.Join(dir, "dst", "disk.img")
			assert.NilError(t, os.Mkdir(filepath.Dir(dst), 0o755))
			if tc.dstBlock {
				dst = testenv.BlockDevice(t, 32<<20)
			}
			sent, received := &progress.Counter{}, &progress.Counter{}
			r := runClone(t, tp,
				clone.SourceOptions{Path: src, Progress: sent, Log: logr.Discard()},
				clone.TargetOptions{Path: dst, Size: tc.targetSize, Progress: received, Log: logr.Discard()})
			assert.NilError(t, r.sendErr)
			assert.NilError(t, r.recvErr)
			testenv.AssertSameDisk(t, dst, srcFile)
			assert.Equal(t, sent.Percent(), 100.0)
			if !tc.dstBlock {
				fi, err := os.Stat(dst)
				assert.NilError(t, err)
				assert.Equal(t, fi.Size(), tc.wantFileSize)
				assert.Assert(t, allocated(t, dst) < size*3/4, "the copy is sparse")
			}
		})
	}
}

// TestCloneSparseSkipsHoles clones a 4 GiB file holding 2 MiB of data:
// only the data is read and sent.
func TestCloneSparseSkipsHoles(t *testing.T) {
	tp := newTLS(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	f, err := os.Create(src)
	assert.NilError(t, err)
	data := bytes.Repeat([]byte("datavolume"), 100_000)
	_, err = f.WriteAt(data, 3<<30)
	assert.NilError(t, err)
	_, err = f.WriteAt(data, 1<<20)
	assert.NilError(t, err)
	assert.NilError(t, f.Truncate(4<<30))
	assert.NilError(t, f.Close())
	dst := filepath.Join(dir, "disk.img")
	sent := &progress.Counter{}
	start := time.Now()
	r := runClone(t, tp, clone.SourceOptions{Path: src, Progress: sent}, clone.TargetOptions{Path: dst, Size: 4 << 30})
	assert.NilError(t, r.sendErr)
	assert.NilError(t, r.recvErr)
	assert.Assert(t, sent.Total() < 4<<20, "sent %d bytes", sent.Total())
	assert.Assert(t, time.Since(start) < 20*time.Second)
	out, err := os.Open(dst)
	assert.NilError(t, err)
	defer out.Close()
	for _, off := range []int64{0, 1 << 20, 3 << 30, 4<<30 - 4096} {
		got := make([]byte, min(len(data), 4096))
		_, err := out.ReadAt(got, off)
		assert.NilError(t, err)
		want := make([]byte, len(got))
		if off == 1<<20 || off == 3<<30 {
			want = data[:len(got)]
		}
		assert.Assert(t, bytes.Equal(got, want), "bytes at %d", off)
	}
	fi, err := out.Stat()
	assert.NilError(t, err)
	assert.Equal(t, fi.Size(), int64(4<<30))
	assert.Assert(t, allocated(t, dst) < 8<<20, "the target stays sparse")
}

func TestCloneRefused(t *testing.T) {
	tp := newTLS(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	testenv.WriteDisk(t, src, 8<<20, 3)

	t.Run("target too small", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "disk.img")
		r := runClone(t, tp, clone.SourceOptions{Path: src}, clone.TargetOptions{Path: dst, Size: 4 << 20})
		assert.ErrorContains(t, r.sendErr, "image is larger than the target")
		assert.ErrorContains(t, r.recvErr, "image is larger than the target")
		assertEmptyDir(t, filepath.Dir(dst))
	})

	t.Run("untrusted client certificate", func(t *testing.T) {
		other := newTLS(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		assert.NilError(t, err)
		dst := filepath.Join(t.TempDir(), "disk.img")
		log, captured := testenv.NewLogger()
		recv := make(chan error, 1)
		go func() { recv <- clone.Receive(ctx, l, clone.TargetOptions{Path: dst, TLS: tp.server, Log: log}) }()
		err = clone.Send(ctx, clone.SourceOptions{Path: src, Address: l.Addr().String(), TLS: other.client})
		assert.ErrorContains(t, err, "certificate")
		cancel()
		assert.ErrorIs(t, <-recv, context.Canceled, "the target keeps waiting for a trusted source")
		assert.Assert(t, strings.Contains(captured.String(), "rejected connection"))
		assertEmptyDir(t, filepath.Dir(dst))
	})

	t.Run("untrusted server certificate", func(t *testing.T) {
		other := newTLS(t)
		dst := filepath.Join(t.TempDir(), "disk.img")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		assert.NilError(t, err)
		go func() { _ = clone.Receive(ctx, l, clone.TargetOptions{Path: dst, TLS: other.server}) }()
		err = clone.Send(ctx, clone.SourceOptions{Path: src, Address: l.Addr().String(), TLS: tp.client})
		assert.ErrorContains(t, err, "certificate signed by unknown authority")
	})

	t.Run("archive into disk target", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "disk.img")
		r := runClone(t, tp, clone.SourceOptions{Path: dir, Kind: clone.Archive}, clone.TargetOptions{Path: dst})
		assert.ErrorContains(t, r.recvErr, "target expects")
		assert.ErrorContains(t, r.sendErr, "target expects")
	})
}

// TestCloneDigestMismatch feeds the target a stream whose digest does not
// match the data: nothing may be committed.
func TestCloneDigestMismatch(t *testing.T) {
	tp := newTLS(t)
	dst := filepath.Join(t.TempDir(), "disk.img")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	recv := make(chan error, 1)
	go func() { recv <- clone.Receive(ctx, l, clone.TargetOptions{Path: dst, TLS: tp.server}) }()
	conn, err := tls.Dial("tcp", l.Addr().String(), tp.client)
	assert.NilError(t, err)
	defer conn.Close()
	stream := clone.ForgedStream(8192, []byte("not what the digest covers"))
	_, err = conn.Write(stream[:clone.HeaderLen])
	assert.NilError(t, err)
	reply := make([]byte, 1)
	_, err = conn.Read(reply)
	assert.NilError(t, err)
	assert.Equal(t, string(reply), "K")
	_, err = conn.Write(stream[clone.HeaderLen:])
	assert.NilError(t, err)
	assert.ErrorContains(t, <-recv, "checksum mismatch")
	assertEmptyDir(t, filepath.Dir(dst))
}

func TestCloneArchive(t *testing.T) {
	tp := newTLS(t)
	src := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(src, "a", "b", "file"), []byte("payload"), 0o640))
	assert.NilError(t, os.Symlink("b/file", filepath.Join(src, "a", "link")))
	dst := t.TempDir()
	r := runClone(t, tp, clone.SourceOptions{Path: src, Kind: clone.Archive}, clone.TargetOptions{Path: dst, Kind: clone.Archive})
	assert.NilError(t, r.sendErr)
	assert.NilError(t, r.recvErr)
	data, err := os.ReadFile(filepath.Join(dst, "a", "link"))
	assert.NilError(t, err)
	assert.Equal(t, string(data), "payload")
	fi, err := os.Stat(filepath.Join(dst, "a", "b", "file"))
	assert.NilError(t, err)
	assert.Equal(t, fi.Mode().Perm(), os.FileMode(0o640))
}

func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(path, &st))
	return st.Blocks * 512
}

func assertEmptyDir(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	assert.NilError(t, err)
	assert.Equal(t, len(entries), 0, "left behind: %v", entries)
}

// BenchmarkCloneDense clones a 256 MiB dense file over loopback mTLS.
func BenchmarkCloneDense(b *testing.B) {
	tp := newTLS(b)
	dir := b.TempDir()
	src := filepath.Join(dir, "src.img")
	testenv.Shell(b, "head -c 256M /dev/urandom > "+src)
	b.SetBytes(256 << 20)
	for b.Loop() {
		dst := filepath.Join(dir, "disk.img")
		r := runClone(b, tp, clone.SourceOptions{Path: src}, clone.TargetOptions{Path: dst})
		assert.NilError(b, r.sendErr)
		assert.NilError(b, r.recvErr)
	}
}

// A source started before its target keeps dialing until the target
// listens, and gives up with a clear error when none ever does.
func TestSourceWaitsForTarget(t *testing.T) {
	tp := newTLS(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	testenv.WriteDisk(t, src, 4<<20, 5)
	// A free port, closed again so that the first dials are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	addr := l.Addr().String()
	assert.NilError(t, l.Close())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		sent <- clone.Send(ctx, clone.SourceOptions{Path: src, Address: addr, TLS: tp.client, ConnectTimeout: 30 * time.Second})
	}()
	time.Sleep(300 * time.Millisecond) // the source is retrying by now
	l, err = net.Listen("tcp", addr)
	assert.NilError(t, err)
	dst := filepath.Join(dir, "disk.img")
	assert.NilError(t, clone.Receive(ctx, l, clone.TargetOptions{Path: dst, TLS: tp.server}))
	assert.NilError(t, <-sent)
	want, err := os.ReadFile(src)
	assert.NilError(t, err)
	got, err := os.ReadFile(dst)
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(got, want))

	err = clone.Send(ctx, clone.SourceOptions{Path: src, Address: addr, TLS: tp.client, ConnectTimeout: 200 * time.Millisecond})
	assert.ErrorContains(t, err, "connecting to clone target "+addr)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
}
