//go:build e2e

package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// component is one process of the local cluster.
type component struct {
	name string
	pid  int
}

// clusterComponents finds the cluster's processes: those that name a file
// under the cluster directory on their command line (the control plane, the
// node's daemons, the containerd shims) and the processes of its Pods, which
// descend from those shims. A Pod's process is named "pod/<command>".
func clusterComponents(dir string) ([]component, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	ancestors := ancestorsOfThisProcess()
	parents := map[int]int{}
	commands := map[int][]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || ancestors[pid] {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // exited, or a kernel thread
		}
		commands[pid] = strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		parents[pid] = parentOf(pid)
	}
	ours := func(pid int) bool { return strings.Contains(strings.Join(commands[pid], " "), dir) }
	var found []component
	for pid, args := range commands {
		name := processName(args)
		switch {
		case name == "kubectl":
			continue
		case ours(pid):
		case underShim(pid, parents, commands, ours):
			name = "pod/" + name
		default:
			continue
		}
		found = append(found, component{name: name, pid: pid})
	}
	slices.SortFunc(found, func(a, b component) int { return a.pid - b.pid })
	return found, nil
}

// processName is a command's base name, or the value of its --name flag:
// the host's etcd and the pod's differ only by that.
func processName(args []string) string {
	name := filepath.Base(args[0])
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--name="); ok {
			return v
		}
		if a == "--name" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return name
}

// underShim tells whether one of pid's ancestors is a containerd shim of
// this cluster.
func underShim(pid int, parents map[int]int, commands map[int][]string, ours func(int) bool) bool {
	seen := map[int]bool{}
	for p := parents[pid]; p > 1 && !seen[p]; p = parents[p] {
		seen[p] = true
		if args := commands[p]; len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && ours(p) {
			return true
		}
	}
	return false
}

// parentOf is a process's parent, 0 if it cannot be read.
func parentOf(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The parent's pid is the second field after the command name.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(fields) < 2 {
		return 0
	}
	parent, _ := strconv.Atoi(fields[1])
	return parent
}

// ancestorsOfThisProcess are this process and those that started it: a
// wrapper such as time(1) or env(1) may name the cluster directory too.
func ancestorsOfThisProcess() map[int]bool {
	ancestors := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !ancestors[pid]; pid = parentOf(pid) {
		ancestors[pid] = true
	}
	return ancestors
}

// cpuTime is the user plus system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may hold spaces, in parentheses.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// cpuSnapshot is the components' CPU time at one moment, summed by name.
func cpuSnapshot(components []component) map[string]time.Duration {
	snap := make(map[string]time.Duration, len(components))
	for _, c := range components {
		if t, err := cpuTime(c.pid); err == nil {
			snap[c.name] += t
		}
	}
	return snap
}

// componentNames are the components' names, each once, in order.
func componentNames(components []component) []string {
	var names []string
	for _, c := range components {
		if !slices.Contains(names, c.name) {
			names = append(names, c.name)
		}
	}
	return names
}
