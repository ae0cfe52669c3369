package qcow2_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
	"github.com/datavolume/datavolume/pkg/cloner/qcow2"
)

func header(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	assert.NilError(t, err)
	defer f.Close()
	b := make([]byte, 512)
	_, err = f.Read(b)
	assert.NilError(t, err)
	return b
}

// TestParseHeader reads headers of images made by qemu-img itself.
func TestParseHeader(t *testing.T) {
	testenv.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	testenv.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "10M")
	for _, tc := range []struct {
		name     string
		create   []string
		wantSize int64
		wantErr  string
	}{
		{name: "v3", create: []string{"-f", "qcow2", "v3.qcow2", "10M"}, wantSize: 10 << 20},
		{name: "v2", create: []string{"-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "3G"}, wantSize: 3 << 30},
		{name: "backing file", create: []string{"-f", "qcow2", "-b", base, "-F", "qcow2", "overlay.qcow2"}, wantErr: "backing file"},
		{name: "external data file", create: []string{"-f", "qcow2", "-o", "data_file=" + filepath.Join(dir, "data.raw"), "ext.qcow2", "10M"}, wantErr: "external data file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.create[len(tc.create)-2]
			if tc.name == "backing file" {
				name = tc.create[len(tc.create)-1]
			}
			args := append([]string{"create", "-q"}, tc.create...)
			for i, a := range args {
				if a == name {
					args[i] = filepath.Join(dir, a)
				}
			}
			testenv.Run(t, "qemu-img", args...)
			h, err := qcow2.ParseHeader(header(t, filepath.Join(dir, name)))
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				assert.ErrorIs(t, err, qcow2.ErrUnsafe)
				return
			}
			assert.NilError(t, err)
			assert.Equal(t, h.VirtualSize, tc.wantSize)
		})
	}
}

func TestParseHeaderMalformed(t *testing.T) {
	valid := make([]byte, 104)
	copy(valid, "QFI\xfb")
	binary.BigEndian.PutUint32(valid[4:], 3)
	for _, tc := range []struct {
		name    string
		mutate  func(b []byte) []byte
		wantErr string
	}{
		{"truncated", func(b []byte) []byte { return b[:40] }, "invalid qcow2 image: the header is truncated"},
		{"version 4", func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 4); return b }, "unsupported qcow2 image: version 4"},
		{"encrypted", func(b []byte) []byte { binary.BigEndian.PutUint32(b[32:], 1); return b }, "unsupported qcow2 image: it is encrypted"},
		{"negative size", func(b []byte) []byte { binary.BigEndian.PutUint64(b[24:], 1<<63); return b }, "invalid qcow2 image: the virtual size overflows"},
		{"corrupt", func(b []byte) []byte { binary.BigEndian.PutUint64(b[72:], 2); return b }, "invalid qcow2 image: it is marked corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte{}, valid...))
			_, err := qcow2.ParseHeader(b)
			assert.ErrorContains(t, err, tc.wantErr)
			assert.Assert(t, errors.Is(err, qcow2.ErrInvalid) || errors.Is(err, qcow2.ErrUnsupported), "%v", err)
			assert.Assert(t, !errors.Is(err, qcow2.ErrUnsafe))
		})
	}
}

// TestConvertNeverOpensBackingFile: even if the header check were
// bypassed, qemu-img is told there is no backing file.
func TestConvertNeverOpensBackingFile(t *testing.T) {
	testenv.RequireTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	base := filepath.Join(dir, "secret.qcow2")
	testenv.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "1M")
	testenv.Run(t, "qemu-io", "-c", "write -P 0x53 0 64k", base)
	overlay := filepath.Join(dir, "overlay.qcow2")
	testenv.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	out := filepath.Join(dir, "out.raw")
	assert.NilError(t, os.WriteFile(out, nil, 0o644))
	assert.NilError(t, os.Truncate(out, 1<<20))
	assert.NilError(t, qcow2.ConvertFile(context.Background(), logr.Discard(), overlay, qcow2.Target{Path: out, Zeroed: true}))
	data, err := os.ReadFile(out)
	assert.NilError(t, err)
	assert.DeepEqual(t, data, make([]byte, 1<<20))
}

func at(off int64) *int64 { return &off }

// TestSequential plans streams from maps shaped like qemu-img's.
func TestSequential(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name    string
		extents []qcow2.Extent
		want    []qcow2.Copy
		wantErr string
	}{
		{
			name: "data runs in order, zeros skipped, adjacent runs merged",
			extents: []qcow2.Extent{
				{Start: 0, Length: mib, Data: true, Offset: at(3 * mib)},
				{Start: mib, Length: mib, Data: true, Offset: at(4 * mib)},
				{Start: 2 * mib, Length: mib, Zero: true},
				{Start: 3 * mib, Length: mib, Data: true, Zero: true, Offset: at(5 * mib)}, // preallocated zeros
				{Start: 4 * mib, Length: mib, Data: true, Offset: at(6 * mib)},
				{Start: 5 * mib, Length: 3 * mib},
			},
			want: []qcow2.Copy{{Guest: 0, Host: 3 * mib, Length: 2 * mib}, {Guest: 4 * mib, Host: 6 * mib, Length: mib}},
		},
		{name: "nothing allocated", extents: []qcow2.Extent{{Start: 0, Length: 8 * mib, Zero: true}}},
		{
			name: "compressed",
			extents: []qcow2.Extent{
				{Start: 0, Length: mib, Data: true, Offset: at(mib)},
				{Start: mib, Length: mib, Data: true},
			},
			wantErr: qcow2.ErrNotSequential.Error(),
		},
		{
			name: "stored out of guest order",
			extents: []qcow2.Extent{
				{Start: 0, Length: mib, Data: true, Offset: at(4 * mib)},
				{Start: 4 * mib, Length: mib, Data: true, Offset: at(2 * mib)},
			},
			wantErr: qcow2.ErrNotSequential.Error(),
		},
		{
			name: "one cluster shared by two guest runs",
			extents: []qcow2.Extent{
				{Start: 0, Length: mib, Data: true, Offset: at(2 * mib)},
				{Start: mib, Length: mib, Data: true, Offset: at(2 * mib)},
			},
			wantErr: qcow2.ErrNotSequential.Error(),
		},
		{
			name: "data past the end of the file",
			extents: []qcow2.Extent{
				{Start: 0, Length: mib, Data: true, Offset: at(9 * mib)},
			},
			wantErr: "qcow2 image is truncated: guest bytes 0-1048575 are stored at 9437184-10485759, past its end (10000000 bytes)",
		},
		{
			name: "truncation is found behind compressed data too",
			extents: []qcow2.Extent{
				{Start: 0, Length: mib, Data: true},
				{Start: mib, Length: mib, Data: true, Offset: at(20 * mib)},
			},
			wantErr: "qcow2 image is truncated",
		},
		{
			name:    "past the virtual size",
			extents: []qcow2.Extent{{Start: 7 * mib, Length: 2 * mib, Zero: true}},
			wantErr: "past the virtual size",
		},
		{
			name: "overlapping guest runs",
			extents: []qcow2.Extent{
				{Start: 0, Length: 2 * mib, Zero: true},
				{Start: mib, Length: mib, Zero: true},
			},
			wantErr: "out of order",
		},
		{name: "empty run", extents: []qcow2.Extent{{Start: 0, Length: 0, Zero: true}}, wantErr: "out of order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := qcow2.Sequential(tc.extents, 10_000_000, 8*mib)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				assert.Assert(t, plan == nil)
				return
			}
			assert.NilError(t, err)
			assert.DeepEqual(t, plan, tc.want)
		})
	}
}

// TestMapFile reads qemu-img's map of a real image with data, zeros and a
// hole, and streams nothing but the data.
func TestMapFile(t *testing.T) {
	testenv.RequireTools(t, "qemu-img", "qemu-io")
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	testenv.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", path, "4M")
	testenv.Run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 128k", "-c", "write -P 0x22 1M 64k", "-c", "write -z 2M 64k", path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	extents, err := qcow2.MapFile(ctx, path)
	assert.NilError(t, err)
	fi, err := os.Stat(path)
	assert.NilError(t, err)
	plan, err := qcow2.Sequential(extents, fi.Size(), 4<<20)
	assert.NilError(t, err)
	assert.Equal(t, len(plan), 2, "%+v", plan)
	f, err := os.Open(path)
	assert.NilError(t, err)
	defer f.Close()
	for i, want := range []struct {
		guest, length int64
		fill          byte
	}{{0, 128 << 10, 0x11}, {1 << 20, 64 << 10, 0x22}} {
		c := plan[i]
		assert.Equal(t, c.Guest, want.guest)
		assert.Equal(t, c.Length, want.length)
		b := make([]byte, c.Length)
		_, err := f.ReadAt(b, c.Host)
		assert.NilError(t, err)
		assert.Assert(t, bytes.Count(b, []byte{want.fill}) == len(b), "run %d at file offset %d holds the guest's data", i, c.Host)
	}

	_, err = qcow2.MapFile(ctx, filepath.Join(t.TempDir(), "absent.qcow2"))
	assert.ErrorContains(t, err, "no such file")
	assert.Assert(t, !errors.Is(err, qcow2.ErrInvalid), "a missing file is no verdict on the image")
	text := filepath.Join(t.TempDir(), "text.qcow2")
	assert.NilError(t, os.WriteFile(text, []byte("not an image\n"), 0o644))
	_, err = qcow2.MapFile(ctx, text)
	assert.ErrorContains(t, err, "invalid qcow2 image: qemu-img map: ")
	assert.ErrorIs(t, err, qcow2.ErrInvalid)
}

// TestDecodeMap refuses output that is not a map, and maps too fragmented
// to be worth streaming, without holding them in memory.
func TestDecodeMap(t *testing.T) {
	const twoRuns = `[{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "offset": 327680},
{ "start": 65536, "length": 65536, "depth": 0, "present": false, "zero": true, "data": false}]`
	got, err := qcow2.DecodeMap(strings.NewReader(twoRuns), 393216)
	assert.NilError(t, err)
	assert.DeepEqual(t, got, []qcow2.Extent{
		{Start: 0, Length: 65536, Data: true, Offset: at(327680)},
		{Start: 65536, Length: 65536, Zero: true},
	})

	_, err = qcow2.DecodeMap(strings.NewReader(twoRuns), 393215)
	assert.ErrorContains(t, err, "qcow2 image is truncated: guest bytes 0-65535 are stored at 327680-393215, past its end (393215 bytes)")
	assert.ErrorIs(t, err, qcow2.ErrInvalid)
	_, err = qcow2.DecodeMap(strings.NewReader(`qemu-img: Could not open`), 1<<30)
	assert.ErrorContains(t, err, "not a JSON array")
	_, err = qcow2.DecodeMap(strings.NewReader(`[{"start": 0, "length": 65536}`), 1<<30)
	assert.ErrorContains(t, err, "decoding output")

	var b strings.Builder
	b.WriteString("[")
	for i := range 1<<16 + 1 {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"start": %d, "length": 512, "zero": true, "data": false}`, i*512)
	}
	b.WriteString("]")
	_, err = qcow2.DecodeMap(strings.NewReader(b.String()), 1<<30)
	assert.ErrorIs(t, err, qcow2.ErrTooFragmented)
}

// TestSequentialProperties checks random maps: a plan, when one is made,
// copies exactly the data runs, each once, in increasing file and guest
// order, inside the file and the virtual size; otherwise an error says why.
func TestSequentialProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const fileSize, virtualSize = 64 << 20, 128 << 20
	var planned, refused int
	for i := range 20000 {
		var extents []qcow2.Extent
		var guest, host int64
		for guest < virtualSize && rng.IntN(12) > 0 {
			e := qcow2.Extent{Start: guest, Length: int64(1+rng.IntN(64)) << 16}
			if e.Start+e.Length > virtualSize {
				e.Length = virtualSize - e.Start
			}
			switch rng.IntN(6) {
			case 0: // a hole
			case 1:
				e.Zero = true
			case 2:
				e.Data = true // compressed
			default:
				e.Data = true
				host += int64(rng.IntN(3)) << 16
				if rng.IntN(40) == 0 {
					host -= int64(rng.IntN(8)) << 16 // stored out of order
				}
				off := host
				e.Offset = &off
				host += e.Length
			}
			extents = append(extents, e)
			guest += e.Length
			if rng.IntN(50) == 0 {
				guest -= 1 << 16 // a broken map
			}
		}
		plan, err := qcow2.Sequential(extents, fileSize, virtualSize)
		if err != nil {
			assert.Assert(t, plan == nil)
			refused++
			continue
		}
		planned++
		var want, got int64
		for _, e := range extents {
			assert.Assert(t, e.Offset != nil || !e.Data || e.Zero, "case %d: compressed data was planned", i)
			if e.Data && !e.Zero {
				want += e.Length
			}
		}
		var guestEnd, hostEnd int64
		for _, c := range plan {
			assert.Assert(t, c.Length > 0 && c.Guest >= guestEnd && c.Host >= hostEnd, "case %d: %+v", i, plan)
			assert.Assert(t, c.Guest+c.Length <= virtualSize && c.Host+c.Length <= fileSize, "case %d: %+v", i, c)
			guestEnd, hostEnd = c.Guest+c.Length, c.Host+c.Length
			got += c.Length
		}
		assert.Equal(t, got, want, "case %d: every data byte is copied once", i)
	}
	t.Logf("%d maps planned, %d refused", planned, refused)
	assert.Assert(t, planned > 2000 && refused > 2000, "the cases cover both outcomes: %d planned, %d refused", planned, refused)
}

// TestMapFileFragmented maps an image of 73,728 runs (512-byte clusters,
// data and holes alternating): too fragmented to stream, yet still checked
// for data stored past its end.
func TestMapFileFragmented(t *testing.T) {
	testenv.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	raw, image := filepath.Join(dir, "frag.raw"), filepath.Join(dir, "frag.qcow2")
	pattern := append(bytes.Repeat([]byte{1}, 512), make([]byte, 512)...)
	assert.NilError(t, os.WriteFile(raw, bytes.Repeat(pattern, 36<<10), 0o644))
	testenv.Run(t, "qemu-img", "convert", "-S", "512", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=512", raw, image)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := qcow2.MapFile(ctx, image)
	assert.ErrorIs(t, err, qcow2.ErrTooFragmented)

	fi, err := os.Stat(image)
	assert.NilError(t, err)
	assert.NilError(t, os.Truncate(image, fi.Size()/2))
	_, err = qcow2.MapFile(ctx, image)
	assert.ErrorContains(t, err, "qcow2 image is truncated")
}
