package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gotest.tools/v3/assert"
)

// startRegistry runs Debian's docker-registry (make deps installs it) on
// loopback and returns host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run make deps (hack/install-deps.sh installs docker-registry)", bin)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	host := l.Addr().String()
	assert.NilError(t, l.Close())
	cfg := filepath.Join(dir, "config.yml")
	assert.NilError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(
		"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "storage"), host)), 0o644))
	cmd := exec.Command(bin, "serve", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Every built image arrives in the registry under the tag, with its labels
// and the digest it was built with; pushed.json names it by that digest.
func TestPushSendsEveryImageWithItsLabels(t *testing.T) {
	host := startRegistry(t)
	dir := t.TempDir()
	built := map[string]string{}
	digests := map[string]string{}
	for _, n := range []string{"server", "worker"} {
		bin := writeFile(t, filepath.Join(dir, "src", n), "binary of "+n)
		spec := imageSpec{Name: n, Entrypoint: "/" + n,
			Files:  []fileEntry{{Source: bin, Target: "/" + n, Mode: 0o755}},
			Labels: map[string]string{"org.opencontainers.image.revision": "abc123", "org.opencontainers.image.version": "v9.9.9"}}
		assert.NilError(t, imageCommand([]string{"--name", n, "--out-dir", dir, "--entrypoint", spec.Entrypoint,
			"--file", bin + ":/" + n, "--label", "org.opencontainers.image.revision=abc123",
			"--label", "org.opencontainers.image.version=v9.9.9"}))
		img, err := buildImage(spec)
		assert.NilError(t, err)
		ref, err := reference(n, img)
		assert.NilError(t, err)
		d, err := img.Digest()
		assert.NilError(t, err)
		built[n], digests[n] = ref.String(), d.String()
	}
	b, err := json.Marshal(built)
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "images.json"), b, 0o644))

	assert.NilError(t, pushCommand([]string{"--images-dir", dir, "--registry", host + "/team/datavolume", "--tag", "v9.9.9"}))

	b, err = os.ReadFile(filepath.Join(dir, "pushed.json"))
	assert.NilError(t, err)
	var pushed map[string]string
	assert.NilError(t, json.Unmarshal(b, &pushed))
	assert.Equal(t, len(pushed), 2)
	for n, digest := range digests {
		assert.Equal(t, pushed[n], host+"/team/datavolume/"+n+"@"+digest)
		tag, err := name.NewTag(host + "/team/datavolume/" + n + ":v9.9.9")
		assert.NilError(t, err)
		img, err := remote.Image(tag)
		assert.NilError(t, err)
		got, err := img.Digest()
		assert.NilError(t, err)
		assert.Equal(t, got.String(), digest, "image %s", n)
		cf, err := img.ConfigFile()
		assert.NilError(t, err)
		assert.Equal(t, cf.Config.Labels["org.opencontainers.image.revision"], "abc123")
		assert.Equal(t, cf.Config.Labels["org.opencontainers.image.version"], "v9.9.9")
	}
}

// A missing images.json says which step makes it.
func TestPushWithoutImagesSaysToBuildThem(t *testing.T) {
	err := pushCommand([]string{"--images-dir", t.TempDir(), "--registry", "127.0.0.1:1/x", "--tag", "t"})
	assert.ErrorContains(t, err, "run make images first")
}
