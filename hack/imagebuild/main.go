// Command imagebuild makes the local cluster's container images without a
// Docker engine: reproducible layers (sorted entries, root owner, the epoch
// as every time) appended with go-containerregistry and written as a
// tarball that `ctr images import` loads. The same files give the same
// image digest, and the tag is that digest's first 12 hex digits.
//
//	imagebuild rootfs-layer ROOT OUT.tar
//	imagebuild image --name NAME --out-dir DIR [--base-layer TAR] [--minimal-etc]
//	    --file SRC:DST[:MODE]... --entrypoint PATH [--user UID] [--label K=V]...
//	imagebuild push --images-dir DIR --registry HOST[:PORT][/PREFIX] --tag TAG
//
// image prints "REFERENCE built" or "REFERENCE cached" (the tarball was
// already there and is not rewritten). push sends every image of
// DIR/images.json to REGISTRY/NAME:TAG and writes DIR/pushed.json, each
// name's pushed reference by digest.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// registry names the images as built here: never pulled from anywhere.
const registry = "datavolume.local"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "imagebuild: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: imagebuild rootfs-layer|image ...")
	}
	switch args[0] {
	case "rootfs-layer":
		if len(args) != 3 {
			return errors.New("usage: imagebuild rootfs-layer ROOT OUT.tar")
		}
		return writeAtomically(args[2], func(w io.Writer) error { return writeRootfsLayer(w, args[1]) })
	case "image":
		return imageCommand(args[1:])
	case "push":
		return pushCommand(args[1:])
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

type fileFlags []fileEntry

func (f *fileFlags) String() string { return fmt.Sprint(*f) }

func (f *fileFlags) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || !strings.HasPrefix(parts[1], "/") {
		return fmt.Errorf("--file %q: want SRC:/DST[:MODE]", v)
	}
	mode := fs.FileMode(0o755)
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil {
			return fmt.Errorf("--file %q: mode: %w", v, err)
		}
		mode = fs.FileMode(m)
	}
	*f = append(*f, fileEntry{Source: parts[0], Target: parts[1], Mode: mode})
	return nil
}

// imageSpec is one image to build.
type imageSpec struct {
	Name       string
	BaseLayer  string // an uncompressed layer tar, e.g. a packed Debian root
	MinimalEtc bool   // /etc/passwd and /etc/group with root and nonroot, and /tmp
	Files      []fileEntry
	Entrypoint string
	User       string
	Labels     map[string]string // the config's labels, e.g. org.opencontainers.image.revision
}

type labelFlags map[string]string

func (l labelFlags) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("--label %q: want KEY=VALUE", v)
	}
	l[k] = val
	return nil
}

func imageCommand(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var spec imageSpec
	var outDir string
	var files fileFlags
	labels := labelFlags{}
	fs.StringVar(&spec.Name, "name", "", "Image name, without registry or tag.")
	fs.StringVar(&outDir, "out-dir", "", "Directory for NAME.tar.")
	fs.StringVar(&spec.BaseLayer, "base-layer", "", "Uncompressed layer tar under the files, e.g. a Debian root.")
	fs.BoolVar(&spec.MinimalEtc, "minimal-etc", false, "Add /etc/passwd, /etc/group (root, nonroot 65532) and /tmp.")
	fs.Var(&files, "file", "SRC:/DST[:MODE] to add (repeatable).")
	fs.StringVar(&spec.Entrypoint, "entrypoint", "", "Entrypoint path in the image.")
	fs.StringVar(&spec.User, "user", "", "User to run as (default root).")
	fs.Var(labels, "label", "KEY=VALUE label of the image's config (repeatable).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	spec.Files = files
	spec.Labels = labels
	if spec.Name == "" || outDir == "" || spec.Entrypoint == "" {
		return errors.New("image: --name, --out-dir and --entrypoint are required")
	}
	out := filepath.Join(outDir, spec.Name+".tar")
	// Building means compressing every layer again (seconds for the
	// cloner's base); unchanged inputs reuse the tarball they made.
	key, err := inputsKey(spec)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(outDir, spec.Name+".inputs")
	if ref, ok := builtFrom(keyFile, out, key); ok {
		fmt.Println(ref, "cached")
		return nil
	}
	img, err := buildImage(spec)
	if err != nil {
		return err
	}
	ref, err := reference(spec.Name, img)
	if err != nil {
		return err
	}
	state := "cached"
	if same, _ := tarballHolds(out, ref); !same {
		state = "built"
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return err
		}
		tmp := out + ".tmp"
		if err := tarball.WriteToFile(tmp, ref, img); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
		if err := os.Rename(tmp, out); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
	}
	if err := os.WriteFile(keyFile, []byte(key+" "+ref.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("recording the inputs of %s: %w", out, err)
	}
	fmt.Println(ref.String(), state)
	return nil
}

// inputsKey is a digest of everything that decides an image's content: the
// spec and the bytes of every file it takes.
func inputsKey(spec imageSpec) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "imagebuild 1\n%s\n%s\n%s\n%t\n", spec.Name, spec.Entrypoint, spec.User, spec.MinimalEtc)
	keys := make([]string, 0, len(spec.Labels))
	for k := range spec.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "label %q=%q\n", k, spec.Labels[k])
	}
	sources := []string{}
	if spec.BaseLayer != "" {
		sources = append(sources, spec.BaseLayer)
	}
	for _, f := range spec.Files {
		fmt.Fprintf(h, "%s %o\n", f.Target, f.Mode)
		sources = append(sources, f.Source)
	}
	for _, src := range sources {
		file, err := os.Open(src)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", src, err)
		}
		_, err = io.Copy(h, file)
		file.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", src, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// builtFrom returns the reference recorded in keyFile when it was made from
// the same inputs and its tarball is still there.
func builtFrom(keyFile, tarballPath, key string) (string, bool) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return "", false
	}
	recorded, ref, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || recorded != key {
		return "", false
	}
	if _, err := os.Stat(tarballPath); err != nil {
		return "", false
	}
	return ref, true
}

// buildImage appends the base layer (if any) and a layer of the files to an
// empty image, and sets a config with nothing that varies between builds.
func buildImage(spec imageSpec) (v1.Image, error) {
	var layers []v1.Layer
	if spec.BaseLayer != "" {
		base, err := tarball.LayerFromFile(spec.BaseLayer)
		if err != nil {
			return nil, fmt.Errorf("reading base layer %s: %w", spec.BaseLayer, err)
		}
		layers = append(layers, base)
	}
	own, err := filesLayer(spec)
	if err != nil {
		return nil, err
	}
	layers = append(layers, own)
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, fmt.Errorf("appending the layers of %s: %w", spec.Name, err)
	}
	return withFixedConfig(img, spec)
}

// filesLayer is the image's own layer: its files and, for --minimal-etc,
// the users that images running as nonroot need.
func filesLayer(spec imageSpec) (v1.Layer, error) {
	content := layerSpec{Files: spec.Files}
	if spec.MinimalEtc {
		content.Inline = []inlineEntry{
			{Target: "/etc/passwd", Mode: 0o644, Content: "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
			{Target: "/etc/group", Mode: 0o644, Content: "root:x:0:\nnonroot:x:65532:\n"},
		}
		content.Dirs = map[string]fs.FileMode{"/tmp": 0o777 | fs.ModeSticky, "/home/nonroot": 0o755}
	}
	var buf bytes.Buffer
	if err := writeLayer(&buf, content); err != nil {
		return nil, fmt.Errorf("the files layer of %s: %w", spec.Name, err)
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// withFixedConfig sets the entrypoint, user and PATH, and leaves out
// everything that varies between builds: no history, a zero creation time.
func withFixedConfig(img v1.Image, spec imageSpec) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("the config of %s: %w", spec.Name, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = []string{spec.Entrypoint}
	cf.Config.User = spec.User
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Labels = nil
	if len(spec.Labels) > 0 {
		cf.Config.Labels = maps.Clone(spec.Labels)
	}
	cf.Created = v1.Time{}
	cf.History = nil
	return mutate.ConfigFile(img, cf)
}

// reference is registry/name:<first 12 hex of the manifest digest>.
func reference(imageName string, img v1.Image) (name.Tag, error) {
	digest, err := img.Digest()
	if err != nil {
		return name.Tag{}, err
	}
	return name.NewTag(fmt.Sprintf("%s/%s:%s", registry, imageName, digest.Hex[:12]))
}

// tarballHolds says whether path is already the tarball of ref, so an
// unchanged image is not rewritten.
func tarballHolds(path string, ref name.Tag) (bool, error) {
	if _, err := os.Stat(path); err != nil {
		return false, err
	}
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		return false, err
	}
	digest, err := img.Digest()
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(digest.Hex, ref.TagStr()), nil
}

// writeAtomically writes a file under a temporary name and renames it.
func writeAtomically(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; a cached layer is readable by all.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
