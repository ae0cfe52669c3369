package format_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
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

// liblzma decodes what the xz tool writes: many blocks in parallel (xz -T2
// with small blocks), concatenated streams (as `cat a.xz b.xz` makes, which
// xz -d accepts), and refuses corrupt data with xz's own words.
func TestXzStreams(t *testing.T) {
	testenv.RequireTools(t, "xz")
	data := make([]byte, 6<<20)
	for i := range data {
		data[i] = byte(i * 7 / 4096) // compressible, not trivial
	}
	compress := func(in []byte, args ...string) []byte {
		cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		assert.NilError(t, err)
		return out
	}
	decode := func(in []byte) ([]byte, error) {
		r, err := format.Decompress(context.Background(), format.Xz, bytes.NewReader(in))
		assert.NilError(t, err)
		defer r.Close()
		return io.ReadAll(r)
	}

	multi := compress(data, "-T2", "--block-size=256KiB", "-1")
	got, err := decode(multi)
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(got, data), "multi-block stream")

	concatenated := append(compress(data[:1<<20]), compress(data[1<<20:])...)
	got, err = decode(concatenated)
	assert.NilError(t, err)
	assert.Assert(t, bytes.Equal(got, data), "concatenated streams")

	corrupt := bytes.Clone(multi)
	corrupt[len(corrupt)/2] ^= 0xff
	_, err = decode(corrupt)
	assert.ErrorContains(t, err, "decompressing xz: compressed data is corrupt")

	_, err = decode(multi[:len(multi)-100])
	assert.ErrorContains(t, err, "decompressing xz: unexpected end of input")

	_, err = decode([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 'n', 'o', 't', ' ', 'x', 'z'})
	assert.ErrorContains(t, err, "decompressing xz:")
}

// xzHugeDictionary is an .xz stream whose one block asks for an LZMA2
// dictionary of dictCode (37: 1.5 GiB, 40: 4 GiB - 1), followed by data
// that would only be read once the dictionary is allocated.
func xzHugeDictionary(dictCode byte) []byte {
	le := binary.LittleEndian
	flags := []byte{0x00, 0x01} // CRC32 check
	out := []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	out = append(out, flags...)
	out = le.AppendUint32(out, crc32.ChecksumIEEE(flags))
	// Block header: 12 bytes (size byte 2), one filter, LZMA2 (0x21) with
	// one property byte, padding, CRC32.
	block := []byte{0x02, 0x00, 0x21, 0x01, dictCode, 0x00, 0x00, 0x00}
	out = append(out, block...)
	out = le.AppendUint32(out, crc32.ChecksumIEEE(block))
	// An LZMA2 chunk: uncompressed, 4 bytes, with a dictionary reset.
	return append(out, 0x01, 0x00, 0x03, 'd', 'a', 't', 'a', 0x00)
}

// A crafted stream whose header asks for a dictionary far beyond any xz
// preset is refused before the decoder allocates it, with an error that
// says why.
func TestXzMemoryLimit(t *testing.T) {
	for _, code := range []byte{37, 40} {
		r, err := format.Decompress(context.Background(), format.Xz, bytes.NewReader(xzHugeDictionary(code)))
		assert.NilError(t, err)
		_, err = io.ReadAll(r)
		r.Close()
		assert.ErrorIs(t, err, format.ErrMemoryLimit)
		assert.ErrorContains(t, err, "dictionary needs more than the 128 MiB allowed")
	}
	// The same stream with a 64 MiB dictionary (code 28, as xz -9) is
	// within the limit: it decodes (its data is made up, so it ends
	// with an error about the data, not the memory).
	r, err := format.Decompress(context.Background(), format.Xz, bytes.NewReader(xzHugeDictionary(28)))
	assert.NilError(t, err)
	defer r.Close()
	_, err = io.ReadAll(r)
	assert.Assert(t, !errors.Is(err, format.ErrMemoryLimit), "%v", err)
}
