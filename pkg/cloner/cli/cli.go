// Package cli is the datavolume-cloner command line: one subcommand per
// kind of job. Each subcommand turns flags into options, validates them,
// and runs the matching package. Logs are JSON lines on stdout; a failure
// ends with exactly one line on stderr and a non-zero exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/datavolume/datavolume/pkg/cloner/progress"
)

const program = "datavolume-cloner"

// command is one subcommand.
type command interface {
	summary() string
	addFlags(fs *pflag.FlagSet)
	validate() error
	run(ctx context.Context, env *env) error
}

// env is what every command gets: a logger and the progress counter.
type env struct {
	log      logr.Logger
	progress *progress.Counter
}

func commands() map[string]command {
	return map[string]command{
		"import":        &importCmd{},
		"upload-server": &uploadCmd{},
		"clone-source":  &cloneSourceCmd{},
		"clone-target":  &cloneTargetCmd{},
		"clone":         &cloneCmd{},
		"gen-certs":     &genCertsCmd{},
	}
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q (see %s --help)\n", program, name, program)
		return 2
	}
	fs := pflag.NewFlagSet(program+" "+name, pflag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.SortFlags = false
	var common commonFlags
	cmd.addFlags(fs)
	common.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: %s %s [flags]\n\n%s\n\nFlags:\n%s", program, name, cmd.summary(), fs.FlagUsages())
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s %s: %v\n", program, name, err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s %s: unexpected arguments %q\n", program, name, fs.Args())
		return 2
	}
	if err := cmd.validate(); err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", program, name, err)
		return 2
	}
	if err := common.run(ctx, stdout, func(ctx context.Context, e *env) error { return cmd.run(ctx, e) }); err != nil {
		fmt.Fprintf(stderr, "%s %s: %s\n", program, name, oneLine(err.Error()))
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintf(w, "%s moves the data of a DataVolume.\n\nUsage: %s <command> [flags]\n\nCommands:\n", program, program)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, cmds[n].summary())
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for its flags.\n", program)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// commonFlags are accepted by every command.
type commonFlags struct {
	progressFile   string
	metricsAddress string
	ownerUID       string
	verbosity      int
}

func (c *commonFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.progressFile, "progress-file", "", "write progress as JSON to this file every second (see package progress)")
	fs.StringVar(&c.metricsAddress, "metrics-address", "", "serve Prometheus /metrics with progress on this address, e.g. :8443 (empty: off)")
	fs.StringVar(&c.ownerUID, "owner-uid", "", "ownerUID label of the progress metrics (the DataVolume's UID)")
	fs.IntVarP(&c.verbosity, "v", "v", 0, "log verbosity")
}

// run sets up logging and progress reporting around a command.
func (c *commonFlags) run(ctx context.Context, logOut io.Writer, fn func(context.Context, *env) error) (err error) {
	e := &env{
		log:      funcr.NewJSON(func(obj string) { fmt.Fprintln(logOut, obj) }, funcr.Options{Verbosity: c.verbosity, LogTimestamp: true}),
		progress: &progress.Counter{},
	}
	if c.metricsAddress != "" {
		l, err := net.Listen("tcp", c.metricsAddress)
		if err != nil {
			return fmt.Errorf("listening for metrics: %w", err)
		}
		srv := &http.Server{Handler: progress.Handler(e.progress, c.ownerUID), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
		e.log.Info("serving metrics", "address", l.Addr().String())
	}
	if c.progressFile != "" {
		w := &progress.FileWriter{Path: c.progressFile, Counter: e.progress}
		pctx, cancel := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- w.Run(pctx) }()
		defer func() {
			cancel()
			if perr := <-stopped; perr != nil {
				e.log.Error(perr, "writing progress file")
			}
			if perr := w.WriteFinal(err == nil); perr != nil && err == nil {
				err = perr
			}
		}()
	}
	err = fn(ctx, e)
	if err != nil {
		e.log.Error(err, "failed")
	} else {
		e.log.Info("succeeded", "bytes", e.progress.Done())
	}
	return err
}

// quantity is a pflag.Value holding a Kubernetes quantity such as 10Gi.
type quantity struct{ bytes int64 }

func (q *quantity) String() string {
	if q.bytes == 0 {
		return ""
	}
	return resource.NewQuantity(q.bytes, resource.BinarySI).String()
}

func (q *quantity) Set(s string) error {
	v, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("want a quantity such as 10Gi: %w", err)
	}
	if v.Sign() <= 0 {
		return errors.New("must be positive")
	}
	q.bytes = v.Value()
	return nil
}

func (q *quantity) Type() string { return "quantity" }

// readSecretFile reads a credential from a mounted Secret key.
func readSecretFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading credentials: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

func isBlockDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
