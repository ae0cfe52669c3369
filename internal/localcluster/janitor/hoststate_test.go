package janitor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"
)

func TestUnescapeMount(t *testing.T) {
	assert.Equal(t, unescapeMount(`/var/lib/with\040space/x`), "/var/lib/with space/x")
	assert.Equal(t, unescapeMount("/plain"), "/plain")
}

// A killed run leaves the node's settings and a record of the ones before
// it; those recorded values are the baseline, and keys the kernel lacks stay
// out.
func TestSysctlsBeforeAnyNode(t *testing.T) {
	current := map[string]string{"kernel.panic": "10", "net.ipv4.ip_forward": "1", "vm.overcommit_memory": "1"}

	got, err := sysctlsBeforeAnyNode(current, filepath.Join(t.TempDir(), "none.json"))
	assert.NilError(t, err)
	assert.DeepEqual(t, got, current)

	record := filepath.Join(t.TempDir(), "record.json")
	assert.NilError(t, os.WriteFile(record, []byte(`{"kernel.panic":"1","net.ipv4.ip_forward":"0","vm.panic_on_oom":"0"}`), 0o644))
	got, err = sysctlsBeforeAnyNode(current, record)
	assert.NilError(t, err)
	assert.DeepEqual(t, got, map[string]string{"kernel.panic": "1", "net.ipv4.ip_forward": "0", "vm.overcommit_memory": "1"})
	assert.Equal(t, current["kernel.panic"], "10", "the current values are not changed")

	assert.NilError(t, os.WriteFile(record, []byte(`{"kernel.panic":`), 0o644))
	_, err = sysctlsBeforeAnyNode(current, record)
	assert.ErrorContains(t, err, "record.json")
}

// Only the links into this node's directory go; another node's links, and
// anything that is not a link, stay.
func TestRemoveContainerLogLinksTouchesOnlyOurs(t *testing.T) {
	tmp := t.TempDir()
	links, ours, other := filepath.Join(tmp, "containers"), filepath.Join(tmp, "cluster"), filepath.Join(tmp, "cluster-2")
	assert.NilError(t, os.MkdirAll(links, 0o755))
	for name, target := range map[string]string{
		"ours.log":    filepath.Join(ours, "pod-logs", "ns_pod_uid", "c", "0.log"),
		"theirs.log":  "/var/log/pods/kube-system_etcd_uid/etcd/0.log",
		"sibling.log": filepath.Join(other, "pod-logs", "ns_pod_uid", "c", "0.log"),
	} {
		assert.NilError(t, os.Symlink(target, filepath.Join(links, name)))
	}
	assert.NilError(t, os.WriteFile(filepath.Join(links, "plain.log"), nil, 0o644))

	assert.NilError(t, removeContainerLogLinks(links, ours))
	entries, err := os.ReadDir(links)
	assert.NilError(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	assert.DeepEqual(t, left, []string{"plain.log", "sibling.log", "theirs.log"})
}

// cgroup v1: the node's root is made in every hierarchy, a cpuset one with
// its parent's CPUs and memory nodes; links (co-mounted hierarchies) are
// passed over.
func TestNodeCgroupRootOnCgroupV1(t *testing.T) {
	root := t.TempDir()
	for _, h := range []string{"cpu,cpuacct", "cpuset", "memory", "pids", "unified"} {
		assert.NilError(t, os.Mkdir(filepath.Join(root, h), 0o755))
	}
	assert.NilError(t, os.Symlink("cpu,cpuacct", filepath.Join(root, "cpu")))
	assert.NilError(t, os.WriteFile(filepath.Join(root, "cpuset", "cpuset.cpus"), []byte("0-1\n"), 0o644))
	assert.NilError(t, os.WriteFile(filepath.Join(root, "cpuset", "cpuset.mems"), []byte("0\n"), 0o644))
	// Another node's pods, which are not ours.
	assert.NilError(t, os.MkdirAll(filepath.Join(root, "memory", "kubepods", "besteffort"), 0o755))

	assert.NilError(t, CreateNodeCgroupRoot(root))
	for _, h := range []string{"cpu,cpuacct", "cpuset", "memory", "pids", "unified"} {
		info, err := os.Stat(filepath.Join(root, h, NodeCgroupRoot))
		assert.NilError(t, err, h)
		assert.Check(t, info.IsDir(), h)
	}
	cpus, err := os.ReadFile(filepath.Join(root, "cpuset", NodeCgroupRoot, "cpuset.cpus"))
	assert.NilError(t, err)
	assert.Equal(t, string(cpus), "0-1\n")

	assert.NilError(t, os.MkdirAll(filepath.Join(root, "memory", NodeCgroupRoot, "kubepods", "pod1"), 0o755))
	got := podCgroups(root)
	assert.DeepEqual(t, got[:3], []string{
		filepath.Join(root, "memory", NodeCgroupRoot, "kubepods", "pod1"),
		filepath.Join(root, "memory", NodeCgroupRoot, "kubepods"),
		filepath.Join(root, "cpu,cpuacct", NodeCgroupRoot),
	})
	assert.Equal(t, len(got), 7, "%v", got)
	for _, dir := range got {
		assert.Check(t, !strings.Contains(dir, string(filepath.Separator)+"kubepods"+string(filepath.Separator)+"besteffort"), dir)
	}
}

// cgroup v2: one tree, so the node's root is made once at its top, not in
// every cgroup (system.slice, user.slice) the tree already has.
func TestNodeCgroupRootOnCgroupV2(t *testing.T) {
	root := t.TempDir()
	assert.NilError(t, os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644))
	for _, d := range []string{"system.slice", "user.slice", "kubepods"} {
		assert.NilError(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	assert.NilError(t, CreateNodeCgroupRoot(root))
	_, err := os.Stat(filepath.Join(root, NodeCgroupRoot))
	assert.NilError(t, err)
	for _, d := range []string{"system.slice", "user.slice", "kubepods"} {
		_, err := os.Stat(filepath.Join(root, d, NodeCgroupRoot))
		assert.Check(t, os.IsNotExist(err), "%s got a node root of its own", d)
	}
	assert.NilError(t, os.MkdirAll(filepath.Join(root, NodeCgroupRoot, "kubepods", "burstable", "pod1"), 0o755))
	assert.DeepEqual(t, podCgroups(root), []string{
		filepath.Join(root, NodeCgroupRoot, "kubepods", "burstable", "pod1"),
		filepath.Join(root, NodeCgroupRoot, "kubepods", "burstable"),
		filepath.Join(root, NodeCgroupRoot, "kubepods"),
		filepath.Join(root, NodeCgroupRoot),
	})
}

// A cluster component started with the directory is the node's; a user's
// program naming the same directory (a shell, a tail of its logs) is not,
// and is never killed.
func TestProcessesOfAreTheNodesOnly(t *testing.T) {
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	// tail -F waits for its file for ever without forking: one process,
	// the directory on its command line, under either name.
	tail, err := exec.LookPath("tail")
	assert.NilError(t, err)
	program, err := os.ReadFile(tail)
	assert.NilError(t, err)
	start := func(name string) *exec.Cmd {
		bin := filepath.Join(tmp, name)
		assert.NilError(t, os.WriteFile(bin, program, 0o755))
		cmd := exec.Command(bin, "-F", filepath.Join(state, "logs", "x.log"))
		assert.NilError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	node, user := start("etcd"), start("tail")

	var pids []int
	for _, p := range processesOf(state) {
		pids = append(pids, p.pid)
	}
	assert.DeepEqual(t, pids, []int{node.Process.Pid})
	assert.Check(t, user.Process.Signal(syscall.Signal(0)) == nil)
}
