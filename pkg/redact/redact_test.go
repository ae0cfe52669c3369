package redact

import (
	"net/url"
	"testing"

	"gotest.tools/v3/assert"
)

func TestURLDropsCredentialsQueryAndFragment(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{"https://images.example/disk.img", "https://images.example/disk.img"},
		{"https://user:p%40ss@images.example:8443/d/disk.img", "https://images.example:8443/d/disk.img"},
		{"https://token@images.example/disk.img", "https://images.example/disk.img"},
		{"https://bucket.s3.example/disk.img?X-Amz-Signature=abc&X-Amz-Credential=key", "https://bucket.s3.example/disk.img"},
		{"https://images.example/disk.img?", "https://images.example/disk.img"},
		{"https://images.example/disk.img#sig=abc", "https://images.example/disk.img"},
		{"docker://user:pass@registry.example/disk:1", "docker://registry.example/disk:1"},
		{"oci-archive:///var/images/disk.tar", "oci-archive:///var/images/disk.tar"},
		{"", ""},
		{"http://user:secret@h/%zz", Unparsable},
		{"http://user:secret@[::1", Unparsable},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			assert.Equal(t, URL(tt.raw), tt.want)
		})
	}
}

func TestParsedURLLeavesItsArgumentAlone(t *testing.T) {
	u, err := url.Parse("https://user:pass@h/d?sig=1")
	assert.NilError(t, err)
	assert.Equal(t, ParsedURL(u), "https://h/d")
	assert.Equal(t, u.String(), "https://user:pass@h/d?sig=1")
	assert.Equal(t, ParsedURL(nil), "")
}

func TestURLsInRedactsEveryURLOfAMessage(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{{
		name: "a Go client error",
		text: `Get "https://bucket.s3.example/disk.img?X-Amz-Signature=abc": dial tcp 10.0.0.1:443: connect: connection refused`,
		want: `Get "https://bucket.s3.example/disk.img": dial tcp 10.0.0.1:443: connect: connection refused`,
	}, {
		name: "a registry error after a redirect",
		text: `pulling registry.example/disk:1: GET https://blobs.example/sha256:ab?sig=s3cr3t&exp=1: unexpected status code 403 Forbidden`,
		want: `pulling registry.example/disk:1: GET https://blobs.example/sha256:ab unexpected status code 403 Forbidden`,
	}, {
		name: "credentials in a URL",
		text: "fetching http://user:secret@h/d.img failed, and 'https://u:p@other/x#frag' too",
		want: "fetching http://h/d.img failed, and 'https://other/x' too",
	}, {
		name: "no URL",
		text: "the source pvc src/disk doesn't exist",
		want: "the source pvc src/disk doesn't exist",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, URLsIn(tt.text), tt.want)
		})
	}
}
