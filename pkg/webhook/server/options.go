package server

import (
	"errors"
	"fmt"
	"net"

	"github.com/spf13/pflag"

	"github.com/datavolume/datavolume/pkg/plan"
)

// Options are the webhook's flags.
type Options struct {
	// TLSCertFile and TLSPrivateKeyFile are the serving certificate and key,
	// reloaded when the files change.
	TLSCertFile       string
	TLSPrivateKeyFile string
	// BindAddress and Port are where the server listens.
	BindAddress string
	Port        int
	// Kubeconfig is the cluster to read claims and pods from and to ask
	// SubjectAccessReviews of; empty means the in-cluster config.
	Kubeconfig string
	// FilesystemOverhead is counted when a Block source is cloned into a
	// Filesystem target.
	FilesystemOverhead float64
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		BindAddress:        "0.0.0.0",
		Port:               8443,
		FilesystemOverhead: float64(plan.DefaultFilesystemOverhead),
	}
}

// AddFlags registers the options' flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "File with the HTTPS serving certificate (PEM); reloaded when it changes.")
	fs.StringVar(&o.TLSPrivateKeyFile, "tls-private-key-file", o.TLSPrivateKeyFile, "File with the private key of --tls-cert-file (PEM); reloaded when it changes.")
	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "IP address to listen on.")
	fs.IntVar(&o.Port, "port", o.Port, "Port to serve HTTPS on.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the cluster; empty uses the in-cluster configuration.")
	fs.Float64Var(&o.FilesystemOverhead, "filesystem-overhead", o.FilesystemOverhead,
		"Share of a Filesystem volume taken by the filesystem (0 to <1); a Block source cloned into a Filesystem volume needs size/(1-overhead).")
}

// Validate reports every flag that is wrong.
func (o *Options) Validate() error {
	var errs []error
	if o.TLSCertFile == "" || o.TLSPrivateKeyFile == "" {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only"))
	}
	if net.ParseIP(o.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("--bind-address %q is not an IP address", o.BindAddress))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not between 1 and 65535", o.Port))
	}
	if err := plan.FilesystemOverhead(o.FilesystemOverhead).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--filesystem-overhead: %w", err))
	}
	return errors.Join(errs...)
}
