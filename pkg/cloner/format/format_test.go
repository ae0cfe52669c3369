package format_test

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/format"
	"github.com/datavolume/datavolume/pkg/cloner/internal/testenv"
)

func tarHeader() []byte {
	b := make([]byte, 512)
	copy(b, "file.txt")
	copy(b[257:], "ustar\x0000")
	return b
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		name string
		head []byte
		want format.Format
	}{
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, format.Gzip},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0}, format.Xz},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0}, format.Zstd},
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), format.Qcow2},
		{"tar", tarHeader(), format.Tar},
		{"raw boot sector", append(make([]byte, 510), 0x55, 0xaa), format.Raw},
		{"empty", nil, format.Raw},
		{"one byte of gzip magic", []byte{0x1f}, format.Raw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, format.Sniff(tc.head), tc.want)
		})
	}
}

// TestDecompress round-trips data compressed by the real tools.
func TestDecompress(t *testing.T) {
	data := bytes.Repeat([]byte("datavolume cloner "), 50_000)
	for _, tc := range []struct {
		format format.Format
		tool   []string
	}{
		{format.Gzip, []string{"gzip", "-c"}},
		{format.Xz, []string{"xz", "-c", "-0"}},
		{format.Zstd, []string{"zstd", "-q", "-c"}},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			testenv.RequireTools(t, tc.tool[0])
			cmd := exec.Command(tc.tool[0], tc.tool[1:]...)
			cmd.Stdin = bytes.NewReader(data)
			compressed, err := cmd.Output()
			assert.NilError(t, err)
			assert.Equal(t, format.Sniff(compressed), tc.format)
			r, err := format.Decompress(context.Background(), tc.format, bytes.NewReader(compressed))
			assert.NilError(t, err)
			got, err := io.ReadAll(r)
			assert.NilError(t, err)
			assert.NilError(t, r.Close())
			assert.Assert(t, bytes.Equal(got, data))

			r, err = format.Decompress(context.Background(), tc.format, bytes.NewReader(compressed[:len(compressed)/2]))
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			assert.ErrorContains(t, err, "", "a truncated stream must fail")
		})
	}
}

// FuzzSniff: any input yields one of the known formats, never a panic,
// and the answer depends only on the leading SniffLen bytes.
func FuzzSniff(f *testing.F) {
	for _, seed := range [][]byte{
		{0x1f, 0x8b}, {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}, []byte("QFI\xfb"), tarHeader(), nil, []byte("raw"),
	} {
		f.Add(seed)
	}
	known := map[format.Format]bool{format.Gzip: true, format.Xz: true, format.Zstd: true, format.Qcow2: true, format.Tar: true, format.Raw: true}
	f.Fuzz(func(t *testing.T, head []byte) {
		got := format.Sniff(head)
		assert.Assert(t, known[got], "unknown format %q", got)
		longer := append(append([]byte{}, head...), make([]byte, 1024)...)
		if len(head) >= format.SniffLen {
			assert.Equal(t, format.Sniff(longer), got)
		}
	})
}
