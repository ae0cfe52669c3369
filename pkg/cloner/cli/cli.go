// Package cli is the datavolume-cloner command line: one subcommand per
// kind of job. Each subcommand turns flags into options, validates them,
// and runs the matching package. Logs are JSON lines on stdout; a failure
// ends with exactly one line on stderr and a non-zero exit code.
//
// The exit code and the one line of JSON written to --termination-log are
// the contract with the controller, described in package exitcode; the
// errors of the packages below are mapped to them in classify.
//
// The commands run as an unprivileged user (uid 107, as CDI's) with a
// read-only root filesystem. What each writes, and so what the pod must
// mount writable:
//
//	import         the directory holding --target (a file target is written under a
//	               temporary name next to it and renamed), or the --target block device,
//	               or the --target directory (archive content, staged in a hidden
//	               directory inside it); --scratch where the image needs it; $TMPDIR
//	               (default /tmp) for the private socket qemu-img reads a qcow2 image
//	               through when it converts one straight from an HTTP(S) server
//	upload-server  as import, without $TMPDIR
//	clone          the directory holding --target, or the --target device or directory
//	clone-target   as clone
//	clone-source   nothing (it reads --source)
//	blank          the directory holding --target, or nothing for a block device
//	gen-certs      --dir
//
// and, for every command, --progress-file and its directory (it is
// replaced atomically) and --termination-log. Nothing else: no home
// directory, no working directory, no caches.
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
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/datavolume/datavolume/pkg/cloner/exitcode"
	"github.com/datavolume/datavolume/pkg/cloner/progress"
	"github.com/datavolume/datavolume/pkg/version"
)

const program = "datavolume-cloner"

// command is one subcommand.
type command interface {
	summary() string
	// kind says which of CDI's progress metrics the command reports.
	kind() progress.Kind
	addFlags(fs *pflag.FlagSet)
	validate() error
	run(ctx context.Context, env *env) error
}

// targeted is a command that writes a target volume; its size goes into
// the termination message.
type targeted interface {
	targetOf() *targetFlags
}

// env is what every command gets: a logger, the progress counter, and a
// place to name the secrets it read, so that no message can show them.
type env struct {
	log      logr.Logger
	progress *progress.Counter
	secrets  []string
}

// secret records a credential the command read.
func (e *env) secret(values ...string) {
	e.secrets = append(e.secrets, values...)
}

func commands() map[string]command {
	return map[string]command{
		"import":        &importCmd{},
		"upload-server": &uploadCmd{},
		"clone-source":  &cloneSourceCmd{},
		"clone-target":  &cloneTargetCmd{},
		"clone":         &cloneCmd{},
		"blank":         &blankCmd{},
		"gen-certs":     &genCertsCmd{},
	}
}

// Main runs the command line and returns the exit code (see package
// exitcode).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintf(stdout, "%s %s\n", program, version.Get())
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return finish(stderr, "", defaultTerminationLog(), nil, invalidArgs(errors.New("no command given")), result{})
		}
		return 0
	}
	name := args[0]
	cmd, ok := cmds[name]
	if !ok {
		err := invalidArgs(fmt.Errorf("unknown command %q (see %s --help)", name, program))
		return finish(stderr, "", defaultTerminationLog(), nil, err, result{})
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
		// Parsing stopped at the bad flag: find the termination log in
		// what it did not get to.
		return finish(stderr, name, scanFlag(args[1:], "termination-log", common.terminationLog), nil, invalidArgs(err), result{})
	}
	if fs.NArg() > 0 {
		return finish(stderr, name, common.terminationLog, nil, invalidArgs(fmt.Errorf("unexpected arguments %q", fs.Args())), result{})
	}
	if err := cmd.validate(); err != nil {
		if !errors.Is(err, errArchiveIntoBlock) {
			err = invalidArgs(err)
		}
		return finish(stderr, name, common.terminationLog, nil, err, result{})
	}
	e := common.env(stdout)
	err := common.run(ctx, cmd, e)
	res := result{bytes: e.progress.Done()}
	if t, ok := cmd.(targeted); ok {
		res.targetSize = t.targetOf().size(err)
	}
	return finish(stderr, name, common.terminationLog, e, err, res)
}

// result is what the termination message reports besides the outcome.
type result struct {
	bytes, targetSize int64
}

// finish reports the outcome: a log line, one line on stderr for a
// failure, the termination message, and the exit code.
func finish(stderr io.Writer, name, terminationLog string, e *env, err error, res result) int {
	code, reason := classify(err)
	t := exitcode.Termination{
		Outcome: exitcode.Succeeded, ExitCode: code, Reason: reason, Message: strings.TrimSpace(name + " completed"),
		Bytes: res.bytes, TargetSize: res.targetSize,
	}
	var log logr.Logger
	if e != nil {
		log = e.log
	}
	if err != nil {
		var secrets []string
		if e != nil {
			secrets = e.secrets
		}
		t.Outcome, t.Message = exitcode.Failed, redact(oneLine(err.Error()), secrets)
		prefix := program
		if name != "" {
			prefix += " " + name
		}
		fmt.Fprintf(stderr, "%s: %s\n", prefix, t.Message)
		log.Error(errors.New(t.Message), "failed", "reason", reason, "exitCode", code, "bytes", res.bytes)
	} else {
		log.Info("succeeded", "bytes", res.bytes, "targetSize", res.targetSize)
	}
	if terminationLog != "" {
		if werr := os.WriteFile(terminationLog, t.Encode(), 0o644); werr != nil {
			// Not a failure of the job: the data is where it belongs.
			log.Error(werr, "writing the termination log", "path", terminationLog)
		}
	}
	return code
}

// redact replaces every credential a command read in a message: the
// errors are built not to hold them, and this makes sure. Values shorter
// than four bytes are left alone, as replacing them would garble the
// message more than hide anything.
func redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "<redacted>")
		}
	}
	return msg
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
	fmt.Fprintf(w, "  %-14s %s\n", "version", "print the build's version and revision (also --version)")
	fmt.Fprintf(w, "\nRun '%s <command> --help' for its flags.\nExit codes: 0 success, 1 retryable failure, 2 usage error, 3 permanent failure, 4 needs --scratch.\n", program)
}

// scanFlag finds the last value of --name in args, in either form
// ("--name v", "--name=v"), or returns def.
func scanFlag(args []string, name, def string) string {
	v := def
	for i, a := range args {
		if a == "--" {
			break
		}
		if rest, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			v = rest
		} else if a == "--"+name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// defaultTerminationLog is where Kubernetes mounts the termination log,
// if this process may write it; otherwise none is written.
func defaultTerminationLog() string {
	if unix.Access(exitcode.DefaultTerminationLog, unix.W_OK) == nil {
		return exitcode.DefaultTerminationLog
	}
	return ""
}

// commonFlags are accepted by every command.
type commonFlags struct {
	progressFile   string
	metricsAddress string
	ownerUID       string
	terminationLog string
	testDelay      time.Duration
	verbosity      int
}

func (c *commonFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.progressFile, "progress-file", "", "write progress as JSON to this file every second (see package progress)")
	fs.StringVar(&c.metricsAddress, "metrics-address", "", "serve Prometheus /metrics with progress (CDI's kubevirt_cdi_import_progress_total or kubevirt_cdi_clone_progress_total, and ours) on this address, e.g. :8443 (empty: off)")
	fs.StringVar(&c.ownerUID, "owner-uid", "", "ownerUID label of the progress metrics (the DataVolume's UID)")
	fs.StringVar(&c.terminationLog, "termination-log", defaultTerminationLog(),
		"on exit, write the outcome to this file as one line of JSON (see package exitcode); empty: off. Default: "+
			exitcode.DefaultTerminationLog+" when it exists and is writable")
	fs.DurationVar(&c.testDelay, "test-delay-per-mib", 0, "TEST ONLY: sleep this long for every MiB moved, so a test can watch progress and kill the job mid-copy")
	_ = fs.MarkHidden("test-delay-per-mib")
	fs.IntVarP(&c.verbosity, "v", "v", 0, "log verbosity")
}

// env sets up logging and the progress counter.
func (c *commonFlags) env(logOut io.Writer) *env {
	e := &env{
		log:      funcr.NewJSON(func(obj string) { fmt.Fprintln(logOut, obj) }, funcr.Options{Verbosity: c.verbosity, LogTimestamp: true}),
		progress: &progress.Counter{},
	}
	if c.testDelay > 0 {
		e.progress.SetDelayPerMiB(c.testDelay)
		e.log.Info("slowing down for a test", "delayPerMiB", c.testDelay.String())
	}
	return e
}

// run serves metrics and keeps the progress file while the command runs.
func (c *commonFlags) run(ctx context.Context, cmd command, e *env) (err error) {
	if c.metricsAddress != "" {
		l, err := net.Listen("tcp", c.metricsAddress)
		if err != nil {
			return fmt.Errorf("listening for metrics: %w", err)
		}
		srv := &http.Server{Handler: progress.Handler(e.progress, c.ownerUID, cmd.kind()), ReadHeaderTimeout: 10 * time.Second}
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
	err = cmd.run(ctx, e)
	if err == nil {
		e.progress.Complete()
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

// blockDeviceSize is the size of a block device.
func blockDeviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

func isBlockDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
