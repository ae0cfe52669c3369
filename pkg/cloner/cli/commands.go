package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/pflag"

	"github.com/datavolume/datavolume/pkg/apis/cdi/matrix"
	"github.com/datavolume/datavolume/pkg/cloner/certs"
	"github.com/datavolume/datavolume/pkg/cloner/checksum"
	"github.com/datavolume/datavolume/pkg/cloner/clone"
	"github.com/datavolume/datavolume/pkg/cloner/httpsource"
	"github.com/datavolume/datavolume/pkg/cloner/importer"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/cloner/registry"
	"github.com/datavolume/datavolume/pkg/cloner/sink"
	"github.com/datavolume/datavolume/pkg/cloner/upload"
)

// targetFlags describe the volume being written, shared by import,
// upload-server, clone-target and clone.
type targetFlags struct {
	contentType string
	target      string
	targetSize  quantity
}

func (t *targetFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.contentType, "content-type", "kubevirt", "kubevirt (a disk image) or archive (a tar archive extracted into a filesystem volume)")
	fs.StringVar(&t.target, "target", "", "kubevirt: the disk image file to write (<mount>/disk.img, created if missing) or a block device; archive: the directory to extract into")
	fs.Var(&t.targetSize, "target-size", "usable size of the volume as a quantity, e.g. 10Gi; a disk image file is sized to it (default: the image's own size)")
}

func (t *targetFlags) validate() error {
	switch {
	case t.target == "":
		return errors.New("--target is required")
	case t.contentType != string(importer.KubeVirt) && t.contentType != string(importer.Archive):
		return fmt.Errorf("--content-type %q: want kubevirt or archive", t.contentType)
	case !matrix.BlockAllowed(matrix.ContentType(t.contentType)) && isBlockDevice(t.target):
		return errArchiveIntoBlock
	case t.contentType == string(importer.Archive) && !isDir(t.target):
		return fmt.Errorf("--target %s must be an existing directory for archive content", t.target)
	case t.contentType == string(importer.KubeVirt) && isDir(t.target):
		return fmt.Errorf("--target %s is a directory: give the disk image file, e.g. %s/disk.img", t.target, strings.TrimRight(t.target, "/"))
	}
	return nil
}

func (t *targetFlags) targetOf() *targetFlags { return t }

// size is the usable size of the target as the command saw it, for the
// termination message: what a too-large image was measured against,
// else --target-size, else the size of what is there; 0 if unknown.
func (t *targetFlags) size(err error) int64 {
	var tooLarge *sink.TooLargeError
	if errors.As(err, &tooLarge) {
		return tooLarge.TargetSize
	}
	if t.targetSize.bytes > 0 {
		return t.targetSize.bytes
	}
	fi, statErr := os.Stat(t.target)
	switch {
	case statErr != nil:
		return 0
	case fi.Mode().IsRegular():
		return fi.Size()
	case isBlockDevice(t.target):
		size, _ := blockDeviceSize(t.target)
		return size
	case fi.IsDir():
		var st unix.Statfs_t
		if unix.Statfs(t.target, &st) == nil {
			return int64(st.Blocks) * int64(st.Bsize)
		}
	}
	return 0
}

type importCmd struct {
	targetFlags
	url              string
	caFile           string
	usernameFile     string
	passwordFile     string
	extraHeaders     []string
	headerDirs       []string
	checksum         string
	scratch          string
	insecureRegistry bool
	connectTimeout   time.Duration
	idleTimeout      time.Duration
	retries          int
}

func (c *importCmd) summary() string {
	return "import an image from http(s)://, docker:// or oci-archive:// into a volume"
}

func (c *importCmd) kind() progress.Kind { return progress.Import }

func (c *importCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "image to import: http(s)://..., docker://host[:port]/repo[:tag] or oci-archive:///path.tar")
	c.targetFlags.addFlags(fs)
	fs.StringVar(&c.caFile, "ca-file", "", "PEM CA bundle trusted in addition to the system roots, or a directory (a certConfigMap mounted whole) whose every PEM file is trusted")
	fs.StringVar(&c.usernameFile, "username-file", "", "file holding the basic-auth (or registry) user name")
	fs.StringVar(&c.passwordFile, "password-file", "", "file holding the basic-auth (or registry) password")
	fs.StringArrayVar(&c.extraHeaders, "extra-header", nil, `header "Name: value" sent with every HTTP(S) request (repeatable; CDI's extraHeaders)`)
	fs.StringArrayVar(&c.headerDirs, "secret-extra-headers-dir", nil, `directory (a Secret mounted whole) whose every file holds one header "Name: value" sent with every HTTP(S) request (repeatable; CDI's secretExtraHeaders); values are never logged`)
	fs.StringVar(&c.checksum, "checksum", "", "algo:hex digest of the downloaded bytes; algo is md5, sha1, sha256 or sha512")
	fs.StringVar(&c.scratch, "scratch", "", "scratch directory, used where the format needs it: qcow2 that is gzip/xz/zstd-compressed, from a registry or oci-archive, from a server without range requests, or to be converted (compressed clusters, data out of guest order) while --checksum is verified")
	fs.BoolVar(&c.insecureRegistry, "insecure-registry", false, "allow plain HTTP or unverified TLS to the registry (loopback registries are always plain HTTP)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 30*time.Second, "timeout to connect to the server")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "a download that delivers no bytes for this long is retried")
	fs.IntVar(&c.retries, "retries", 5, "retries after a transient failure (resumed with Range requests where possible)")
}

func (c *importCmd) validate() error {
	if c.url == "" {
		return errors.New("--url is required")
	}
	if err := c.targetFlags.validate(); err != nil {
		return err
	}
	if c.checksum != "" {
		if _, err := checksum.Parse(c.checksum); err != nil {
			return err
		}
	}
	if c.isRegistry() && !matrix.EndpointSupported(matrix.ContentType(c.contentType), matrix.EndpointRegistry) {
		return errors.New("archive content cannot be imported from a registry")
	}
	if c.isRegistry() && (len(c.extraHeaders) > 0 || len(c.headerDirs) > 0) {
		return errors.New("--extra-header and --secret-extra-headers-dir apply to http(s) sources only")
	}
	for i, line := range c.extraHeaders {
		if _, _, err := httpsource.ParseHeaderLine(line); err != nil {
			return fmt.Errorf("--extra-header #%d: %w", i+1, err)
		}
	}
	return nil
}

// headers reads the extra headers of the flags and the mounted Secrets,
// naming every value as a secret.
func (c *importCmd) headers(e *env) (http.Header, error) {
	h := http.Header{}
	add := func(line, from string) error {
		name, value, err := httpsource.ParseHeaderLine(line)
		if err != nil {
			return invalidArgs(fmt.Errorf("%s: %w", from, err))
		}
		e.secret(value)
		h.Add(name, value)
		return nil
	}
	for i, line := range c.extraHeaders {
		if err := add(line, fmt.Sprintf("--extra-header #%d", i+1)); err != nil {
			return nil, err
		}
	}
	for _, dir := range c.headerDirs {
		files, err := certs.VolumeFiles(dir)
		if err != nil {
			return nil, fmt.Errorf("reading extra headers: %w", err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading extra headers: %w", err)
			}
			line := strings.TrimRight(string(data), "\r\n")
			if strings.ContainsAny(line, "\r\n") {
				return nil, invalidArgs(fmt.Errorf("extra header file %s: must hold one header line", f))
			}
			if err := add(line, "extra header file "+f); err != nil {
				return nil, err
			}
		}
	}
	if len(h) > 0 {
		names := make([]string, 0, len(h))
		for name := range h {
			names = append(names, name)
		}
		sort.Strings(names)
		e.log.V(1).Info("sending extra headers", "names", names)
	}
	return h, nil
}

func (c *importCmd) isRegistry() bool {
	return strings.HasPrefix(c.url, "docker://") || strings.HasPrefix(c.url, "oci-archive://")
}

func (c *importCmd) run(ctx context.Context, e *env) error {
	user, err := readSecretFile(c.usernameFile)
	if err != nil {
		return err
	}
	pass, err := readSecretFile(c.passwordFile)
	if err != nil {
		return err
	}
	e.secret(pass) // the user name is no secret, and may be a common word
	header, err := c.headers(e)
	if err != nil {
		return err
	}
	o := importer.Options{
		ContentType: importer.ContentType(c.contentType),
		Target:      c.target,
		TargetSize:  c.targetSize.bytes,
		ScratchDir:  c.scratch,
		Progress:    e.progress,
		Log:         e.log,
	}
	if c.checksum != "" {
		o.Checksum, _ = checksum.Parse(c.checksum)
	}
	var stream importer.Stream
	if c.isRegistry() {
		o.RawOrQcow2Only = !matrix.CompressedSupported(matrix.ContentType(c.contentType), matrix.EndpointRegistry)
		stream, err = registry.Open(ctx, registry.Options{
			URL: c.url, CAFile: c.caFile, Username: user, Password: pass,
			Insecure: c.insecureRegistry, ScratchDir: c.scratch, Log: e.log,
		})
	} else {
		var src *httpsource.Source
		src, err = httpsource.New(httpsource.Options{
			URL: c.url, CAFile: c.caFile, Username: user, Password: pass, Header: header,
			// A body whose end is not marked is whole if the checksum says so.
			AcceptUnframed: o.Checksum != nil,
			ConnectTimeout: c.connectTimeout, IdleTimeout: c.idleTimeout, Retries: c.retries, Log: e.log,
		})
		if err != nil {
			return err
		}
		e.log.Info("importing", "url", src.String(), "target", c.target, "contentType", c.contentType)
		stream, err = src.Open(ctx)
	}
	if err != nil {
		return err
	}
	return importer.Import(ctx, stream, o)
}

type uploadCmd struct {
	targetFlags
	listen      string
	tlsCert     string
	tlsKey      string
	clientCA    string
	scratch     string
	idleTimeout time.Duration
}

func (c *uploadCmd) summary() string {
	return "receive one image over HTTPS (POST /v1beta1/upload) and write it like import"
}

func (c *uploadCmd) kind() progress.Kind { return progress.Import }

func (c *uploadCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.listen, "listen", ":8443", "address to serve HTTPS on")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "server certificate (PEM)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "server key (PEM)")
	fs.StringVar(&c.clientCA, "client-ca", "", "CA (PEM) the clients' certificates must be signed by (the upload proxy's); required")
	c.targetFlags.addFlags(fs)
	fs.StringVar(&c.scratch, "scratch", "", "scratch directory, needed for qcow2 uploads")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "an upload whose client sends nothing for this long fails, freeing the server for another")
}

func (c *uploadCmd) validate() error {
	if c.tlsCert == "" || c.tlsKey == "" {
		return errors.New("--tls-cert and --tls-key are required")
	}
	if c.clientCA == "" {
		return errors.New("--client-ca is required: only the upload proxy, with a certificate it signed, may upload")
	}
	if err := c.targetFlags.validate(); err != nil {
		return err
	}
	if !matrix.EndpointSupported(matrix.ContentType(c.contentType), matrix.EndpointUpload) {
		return errors.New("archive content cannot be uploaded")
	}
	return nil
}

func (c *uploadCmd) run(ctx context.Context, e *env) error {
	cfg, err := certs.ServerConfig(c.tlsCert, c.tlsKey, c.clientCA)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	e.log.Info("waiting for an upload", "address", l.Addr().String(), "target", c.target)
	srv := upload.New(upload.Options{
		Import: importer.Options{
			ContentType: importer.ContentType(c.contentType), Target: c.target, TargetSize: c.targetSize.bytes,
			ScratchDir: c.scratch, Progress: e.progress, Log: e.log,
		},
		IdleTimeout: c.idleTimeout,
	})
	return upload.Serve(ctx, l, cfg, srv)
}

type tlsFlags struct {
	cert, key, ca string
}

func (t *tlsFlags) addFlags(fs *pflag.FlagSet, role string) {
	fs.StringVar(&t.cert, "tls-cert", "", role+" certificate (PEM), e.g. from gen-certs")
	fs.StringVar(&t.key, "tls-key", "", role+" key (PEM)")
	fs.StringVar(&t.ca, "tls-ca", "", "CA (PEM) the peer's certificate must be signed by")
}

func (t *tlsFlags) validate() error {
	if t.cert == "" || t.key == "" || t.ca == "" {
		return errors.New("--tls-cert, --tls-key and --tls-ca are required: clones use mutual TLS")
	}
	return nil
}

type cloneSourceCmd struct {
	tls            tlsFlags
	source         string
	contentType    string
	targetAddress  string
	serverName     string
	connectTimeout time.Duration
}

func (c *cloneSourceCmd) summary() string {
	return "read a volume (disk image file, block device or directory) and stream it to clone-target"
}

func (c *cloneSourceCmd) kind() progress.Kind { return progress.Clone }

func (c *cloneSourceCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.source, "source", "", "kubevirt: the disk image file (<mount>/disk.img) or block device; archive: the directory")
	fs.StringVar(&c.contentType, "content-type", "kubevirt", "kubevirt or archive")
	fs.StringVar(&c.targetAddress, "target-address", "", "host:port of the clone target")
	fs.StringVar(&c.serverName, "server-name", "", "name the target's certificate must carry (default: the host of --target-address)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 2*time.Minute, "how long to keep trying to reach the target")
	c.tls.addFlags(fs, "client")
}

func (c *cloneSourceCmd) validate() error {
	if c.source == "" || c.targetAddress == "" {
		return errors.New("--source and --target-address are required")
	}
	if _, _, err := net.SplitHostPort(c.targetAddress); err != nil {
		return fmt.Errorf("--target-address: %w", err)
	}
	if err := checkArchiveSource(c.source, c.contentType); err != nil {
		return err
	}
	return c.tls.validate()
}

func (c *cloneSourceCmd) run(ctx context.Context, e *env) error {
	serverName := c.serverName
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(c.targetAddress)
	}
	cfg, err := certs.ClientConfig(c.tls.cert, c.tls.key, c.tls.ca, serverName)
	if err != nil {
		return err
	}
	return clone.Send(ctx, clone.SourceOptions{
		Path: c.source, Kind: clone.Kind(c.contentType), Address: c.targetAddress, TLS: cfg,
		ConnectTimeout: c.connectTimeout, Progress: e.progress, Log: e.log,
	})
}

type cloneTargetCmd struct {
	targetFlags
	tls    tlsFlags
	listen string
}

func (c *cloneTargetCmd) summary() string {
	return "receive a clone from clone-source over mutual TLS and write it to a volume"
}

func (c *cloneTargetCmd) kind() progress.Kind { return progress.Clone }

func (c *cloneTargetCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.listen, "listen", ":8443", "address to accept the clone source on")
	c.targetFlags.addFlags(fs)
	c.tls.addFlags(fs, "server")
}

func (c *cloneTargetCmd) validate() error {
	if err := c.targetFlags.validate(); err != nil {
		return err
	}
	return c.tls.validate()
}

func (c *cloneTargetCmd) run(ctx context.Context, e *env) error {
	cfg, err := certs.ServerConfig(c.tls.cert, c.tls.key, c.tls.ca)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	e.log.Info("waiting for the clone source", "address", l.Addr().String(), "target", c.target)
	return clone.Receive(ctx, l, clone.TargetOptions{
		Path: c.target, Kind: clone.Kind(c.contentType), Size: c.targetSize.bytes, TLS: cfg,
		Progress: e.progress, Log: e.log,
	})
}

// cloneCmd is a clone whose two volumes one pod mounts: a clone within a
// namespace needs no second pod, network or certificates.
type cloneCmd struct {
	targetFlags
	source string
}

func (c *cloneCmd) summary() string {
	return "copy a volume mounted in the same pod to another: no network, no TLS"
}

func (c *cloneCmd) kind() progress.Kind { return progress.Clone }

func (c *cloneCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.source, "source", "", "kubevirt: the disk image file (<mount>/disk.img) or block device; archive: the directory")
	c.targetFlags.addFlags(fs)
}

func (c *cloneCmd) validate() error {
	if c.source == "" {
		return errors.New("--source is required")
	}
	if err := c.targetFlags.validate(); err != nil {
		return err
	}
	if err := checkArchiveSource(c.source, c.contentType); err != nil {
		return err
	}
	if c.contentType == string(clone.KubeVirt) && isDir(c.source) {
		return fmt.Errorf("--source %s is a directory: give the disk image file, e.g. %s/disk.img", c.source, strings.TrimRight(c.source, "/"))
	}
	return nil
}

// checkArchiveSource refuses an archive clone whose source is not a
// directory, for clone-source and clone alike.
func checkArchiveSource(source, contentType string) error {
	if contentType == string(clone.Archive) && !isDir(source) {
		return fmt.Errorf("--source %s must be a directory for archive content", source)
	}
	return nil
}

func (c *cloneCmd) run(ctx context.Context, e *env) error {
	return clone.Copy(ctx, clone.LocalOptions{
		Source: c.source, Target: c.target, Kind: clone.Kind(c.contentType), Size: c.targetSize.bytes,
		Progress: e.progress, Log: e.log,
	})
}

type genCertsCmd struct {
	dir      string
	hosts    []string
	validity time.Duration
}

func (c *genCertsCmd) summary() string {
	return "write a per-job CA, server and client certificate for a clone into a directory"
}

func (c *genCertsCmd) kind() progress.Kind { return progress.Clone }

func (c *genCertsCmd) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.dir, "dir", "", "directory to write ca.crt, server.crt/key and client.crt/key into")
	fs.StringSliceVar(&c.hosts, "host", []string{"localhost", "127.0.0.1"}, "DNS names or IPs of the clone target")
	fs.DurationVar(&c.validity, "validity", 48*time.Hour, "how long the certificates are valid")
}

func (c *genCertsCmd) validate() error {
	if c.dir == "" {
		return errors.New("--dir is required")
	}
	return nil
}

func (c *genCertsCmd) run(_ context.Context, e *env) error {
	files, err := certs.Generate(c.dir, c.hosts, c.validity)
	if err != nil {
		return err
	}
	e.log.Info("wrote certificates", "ca", files.CA, "server", files.ServerCert, "client", files.ClientCert)
	return nil
}
