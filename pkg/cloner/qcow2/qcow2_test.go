package qcow2_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

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
		{"truncated", func(b []byte) []byte { return b[:40] }, "truncated"},
		{"version 4", func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 4); return b }, "version 4"},
		{"encrypted", func(b []byte) []byte { binary.BigEndian.PutUint32(b[32:], 1); return b }, "encrypted"},
		{"negative size", func(b []byte) []byte { binary.BigEndian.PutUint64(b[24:], 1<<63); return b }, "overflows"},
		{"corrupt", func(b []byte) []byte { binary.BigEndian.PutUint64(b[72:], 2); return b }, "corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte{}, valid...))
			_, err := qcow2.ParseHeader(b)
			assert.ErrorContains(t, err, tc.wantErr)
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
