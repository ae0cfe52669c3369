package server

import (
	"testing"

	"github.com/spf13/pflag"
	"gotest.tools/v3/assert"
)

func TestOptionsFlags(t *testing.T) {
	options := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	options.AddFlags(fs)
	assert.NilError(t, fs.Parse([]string{
		"--tls-cert-file=/certs/tls.crt", "--tls-private-key-file=/certs/tls.key",
		"--bind-address=127.0.0.1", "--port=9443", "--kubeconfig=/kube/config", "--filesystem-overhead=0.1",
	}))
	assert.DeepEqual(t, *options, Options{
		TLSCertFile: "/certs/tls.crt", TLSPrivateKeyFile: "/certs/tls.key",
		BindAddress: "127.0.0.1", Port: 9443, Kubeconfig: "/kube/config", FilesystemOverhead: 0.1,
	})
	assert.NilError(t, options.Validate())
}

func TestOptionsDefaults(t *testing.T) {
	assert.DeepEqual(t, *NewOptions(), Options{BindAddress: "0.0.0.0", Port: 8443, FilesystemOverhead: 0.055})
}

func TestOptionsValidate(t *testing.T) {
	valid := func() *Options {
		o := NewOptions()
		o.TLSCertFile, o.TLSPrivateKeyFile = "tls.crt", "tls.key"
		return o
	}
	tests := []struct {
		name    string
		modify  func(*Options)
		wantErr string
	}{
		{"defaults with certificates", func(*Options) {}, ""},
		{"no overhead", func(o *Options) { o.FilesystemOverhead = 0 }, ""},
		{"IPv6 bind address", func(o *Options) { o.BindAddress = "::" }, ""},
		{"no certificate", func(o *Options) { o.TLSCertFile = "" },
			"--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only"},
		{"no key", func(o *Options) { o.TLSPrivateKeyFile = "" },
			"--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only"},
		{"host name as bind address", func(o *Options) { o.BindAddress = "localhost" }, `--bind-address "localhost" is not an IP address`},
		{"port zero", func(o *Options) { o.Port = 0 }, "--port 0 is not between 1 and 65535"},
		{"port too high", func(o *Options) { o.Port = 70000 }, "--port 70000 is not between 1 and 65535"},
		{"overhead of everything", func(o *Options) { o.FilesystemOverhead = 1 }, "--filesystem-overhead: filesystem overhead 1 must be at least 0 and less than 1"},
		{"negative overhead", func(o *Options) { o.FilesystemOverhead = -0.1 }, "--filesystem-overhead: filesystem overhead -0.1 must be at least 0 and less than 1"},
		{"every error at once", func(o *Options) { o.TLSCertFile, o.Port = "", 0 },
			"--tls-cert-file and --tls-private-key-file are required: the API server calls webhooks over HTTPS only\n--port 0 is not between 1 and 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.modify(o)
			err := o.Validate()
			if tt.wantErr == "" {
				assert.NilError(t, err)
				return
			}
			assert.Error(t, err, tt.wantErr)
		})
	}
}
