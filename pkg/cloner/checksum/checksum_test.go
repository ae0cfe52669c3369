package checksum_test

import (
	"strings"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/checksum"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string
	}{
		{in: "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{in: "SHA1:a9993e364706816aba3e25717850c26c9cd0d89d"},
		{in: "md5:900150983cd24fb0d6963f7d28e17f72"},
		{in: "sha512:" + strings.Repeat("ab", 64)},
		{in: "sha256", wantErr: "want algo:hex"},
		{in: "crc32:00000000", wantErr: `checksum algorithm "crc32"`},
		{in: "sha256:abc", wantErr: "want 64 hex digits"},
		{in: "md5:" + strings.Repeat("zz", 16), wantErr: "want 32 hex digits"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			e, err := checksum.Parse(tc.in)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			assert.NilError(t, err)
			assert.Equal(t, e.String(), strings.ToLower(tc.in))
		})
	}
}

func TestVerify(t *testing.T) {
	e, err := checksum.Parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	assert.NilError(t, err)
	h := e.NewHash()
	h.Write([]byte("abc"))
	assert.NilError(t, e.Verify(h))
	h.Write([]byte("d"))
	assert.ErrorContains(t, e.Verify(h), "checksum mismatch: want sha256:ba78")
	assert.ErrorIs(t, e.Verify(h), checksum.ErrMismatch)
}
