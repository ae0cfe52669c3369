//go:build e2e

package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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

// clusterComponents finds the cluster's processes: every one of them names a
// file under the cluster directory on its command line.
func clusterComponents(dir string) ([]component, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	ancestors := ancestorsOfThisProcess()
	var found []component
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || ancestors[pid] {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(raw, []byte(dir)) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		name := filepath.Base(args[0])
		// The two etcds differ only by --name.
		for i, a := range args[:len(args)-1] {
			if a == "--name" {
				name = args[i+1]
			}
		}
		if name == "kubectl" {
			continue
		}
		found = append(found, component{name: name, pid: pid})
	}
	return found, nil
}

// ancestorsOfThisProcess are this process and those that started it: a
// wrapper such as time(1) or env(1) may name the cluster directory too.
func ancestorsOfThisProcess() map[int]bool {
	ancestors := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !ancestors[pid]; {
		ancestors[pid] = true
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		// The parent's pid is the second field after the command name.
		fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
		if len(fields) < 2 {
			break
		}
		if pid, err = strconv.Atoi(fields[1]); err != nil {
			break
		}
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

// cpuSnapshot is every component's CPU time at one moment, by name.
func cpuSnapshot(components []component) map[string]time.Duration {
	snap := make(map[string]time.Duration, len(components))
	for _, c := range components {
		if t, err := cpuTime(c.pid); err == nil {
			snap[c.name] = t
		}
	}
	return snap
}
