// Package checksum verifies a digest given as "algo:hex" over a stream.
package checksum

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

var algorithms = map[string]struct {
	new  func() hash.Hash
	size int
}{
	"md5":    {md5.New, md5.Size},
	"sha1":   {sha1.New, sha1.Size},
	"sha256": {sha256.New, sha256.Size},
	"sha512": {sha512.New, sha512.Size},
}

// ErrMismatch reports bytes whose digest is not the expected one.
var ErrMismatch = errors.New("checksum mismatch")

// Expected is a parsed "algo:hex" checksum.
type Expected struct {
	Algorithm string
	Digest    []byte
}

// Parse reads "algo:hex" with algo one of md5, sha1, sha256, sha512.
func Parse(s string) (*Expected, error) {
	algo, hexDigest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("checksum %q: want algo:hex", s)
	}
	algo = strings.ToLower(algo)
	a, known := algorithms[algo]
	if !known {
		return nil, fmt.Errorf("checksum algorithm %q: want md5, sha1, sha256 or sha512", algo)
	}
	digest, err := hex.DecodeString(hexDigest)
	if err != nil || len(digest) != a.size {
		return nil, fmt.Errorf("checksum %q: want %d hex digits for %s", s, 2*a.size, algo)
	}
	return &Expected{Algorithm: algo, Digest: digest}, nil
}

// String returns the checksum in its "algo:hex" form.
func (e *Expected) String() string { return e.Algorithm + ":" + hex.EncodeToString(e.Digest) }

// NewHash returns a hash to feed the bytes to verify.
func (e *Expected) NewHash() hash.Hash { return algorithms[e.Algorithm].new() }

// Verify compares the hash's sum with the expected digest.
func (e *Expected) Verify(h hash.Hash) error {
	got := h.Sum(nil)
	if !bytes.Equal(got, e.Digest) {
		return fmt.Errorf("%w: want %s, got %s:%s", ErrMismatch, e, e.Algorithm, hex.EncodeToString(got))
	}
	return nil
}
