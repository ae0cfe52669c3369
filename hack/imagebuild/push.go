package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pushCommand sends the images hack/build-images.sh made to a registry
// under one tag, so a cluster that is not this machine can pull them.
func pushCommand(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	var dir, registryPrefix, tag string
	fs.StringVar(&dir, "images-dir", "_output/images", "Directory with images.json and the image tarballs.")
	fs.StringVar(&registryPrefix, "registry", "", "Registry and optional path prefix, e.g. registry.example.com:5000/datavolume.")
	fs.StringVar(&tag, "tag", "", "Tag to push every image under.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if registryPrefix == "" || tag == "" {
		return errors.New("push: --registry and --tag are required")
	}
	pushed, err := push(dir, strings.TrimSuffix(registryPrefix, "/"), tag)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(pushed, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomically(filepath.Join(dir, "pushed.json"), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// push writes every image of dir/images.json to prefix/NAME:tag and
// returns each name's pushed reference by digest. A registry on loopback
// (or one that otherwise speaks plain HTTP) is reached over HTTP, as the
// container runtimes do; any other over HTTPS.
func push(dir, prefix, tag string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "images.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the built images (run make images first): %w", err)
	}
	var built map[string]string
	if err := json.Unmarshal(b, &built); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, "images.json"), err)
	}
	names := make([]string, 0, len(built))
	for n := range built {
		names = append(names, n)
	}
	sort.Strings(names)
	pushed := map[string]string{}
	for _, n := range names {
		local, err := name.NewTag(built[n])
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", n, err)
		}
		img, err := tarball.ImageFromPath(filepath.Join(dir, n+".tar"), &local)
		if err != nil {
			return nil, fmt.Errorf("reading image %s: %w", n, err)
		}
		dst, err := name.NewTag(prefix+"/"+n+":"+tag, name.WeakValidation)
		if err != nil {
			return nil, fmt.Errorf("naming image %s in %s: %w", n, prefix, err)
		}
		if err := remote.Write(dst, img); err != nil {
			return nil, fmt.Errorf("pushing %s: %w", dst, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		pushed[n] = dst.Context().Digest(digest.String()).String()
		fmt.Printf("%s pushed (%s)\n", dst, digest)
	}
	return pushed, nil
}
