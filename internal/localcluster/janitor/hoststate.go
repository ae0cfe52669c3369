// Package janitor records and puts back what the local node changes on the
// host (sysctls, mounts, loop devices, cgroups, processes, container log
// links, and through nodenet its network), touching nothing another node
// or runtime made; Leftovers says what is left, and a Decoy proves what was
// not touched.
package janitor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/datavolume/datavolume/internal/localcluster/nodenet"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The node changes the machine: the kubelet sets kernel sysctls, containerd
// and the kubelet mount, the storage helpers attach loop devices, and the
// launcher makes the node's network namespace and its link (netns.go),
// inside which kube-proxy, the kubelet and the CNI plugins write their
// iptables rules, the bridge and the pods' network namespaces. This file
// puts all of it back, touching nothing it did not make, and says what is
// left.

// nodeSysctls are the kernel settings the node's components change.
var nodeSysctls = []string{
	// The kubelet (protectKernelDefaults: false).
	"kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	// Per network namespace: the bridge plugin, kube-proxy and the launcher
	// set them in the node's; of the host's (read here, in its namespace)
	// the launcher sets only ip_forward, for the node's traffic out
	// (with nodenet.EnableEgress's rules).
	"net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.ipv4.conf.all.route_localnet",
	// kube-proxy (off in its configuration; global tables).
	"net.netfilter.nf_conntrack_max",
	"net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
}

// sysctlSnapshot is the machine-wide record of the settings before any node
// ran, kept across a crash so a later start or stop can still restore them.
const sysctlSnapshot = "/run/datavolume-localcluster.sysctl.json"

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// ReadSysctls returns the current value of each node sysctl the kernel has.
func ReadSysctls() map[string]string {
	values := map[string]string{}
	for _, key := range nodeSysctls {
		b, err := os.ReadFile(sysctlPath(key))
		if err != nil {
			continue // not in this kernel
		}
		values[key] = strings.TrimSpace(string(b))
	}
	return values
}

// SaveSysctls records the settings unless a record from a run that did not
// stop cleanly exists: that one holds the true originals.
func SaveSysctls() error {
	if _, err := os.Stat(sysctlSnapshot); err == nil {
		return nil
	}
	b, err := json.Marshal(ReadSysctls())
	if err != nil {
		return err
	}
	tmp := sysctlSnapshot + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("recording sysctls: %w", err)
	}
	return os.Rename(tmp, sysctlSnapshot)
}

// readSysctlRecord reads a record SaveSysctls wrote; nil if there is none.
func readSysctlRecord(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var values map[string]string
	if err := json.Unmarshal(b, &values); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return values, nil
}

// restoreSysctls writes back the recorded settings and drops the record.
func restoreSysctls() error {
	values, err := readSysctlRecord(sysctlSnapshot)
	if err != nil || values == nil {
		return err
	}
	var errs []error
	for key, value := range values {
		if err := WriteSysctl(key, value); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.Remove(sysctlSnapshot)
}

func WriteSysctl(key, value string) error {
	current, err := os.ReadFile(sysctlPath(key))
	if err == nil && strings.TrimSpace(string(current)) == value {
		return nil
	}
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting %s=%s: %w", key, value, err)
	}
	return nil
}

// iptablesChainPrefixes name the chains kube-proxy, the kubelet and the CNI
// plugins create: in the node's network namespace, never in the host's
// tables, which nothing here writes. The host's are listed before and after
// a run to prove it.
var iptablesChainPrefixes = []string{"KUBE-", "CNI-"}

func ourChain(name string) bool {
	for _, p := range iptablesChainPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// iptablesTools are the save tools of each backend and family: the kubelet
// and kube-proxy pick a backend at run time.
var iptablesTools = []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"}

// iptablesSaved is one backend's and family's rules as its save tool prints
// them.
type iptablesSaved struct {
	save  string
	rules []byte
	err   error
}

// saveIptables runs the save tool of each backend and family installed.
func saveIptables(ctx context.Context) []iptablesSaved {
	var all []iptablesSaved
	for _, tool := range iptablesTools {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		rules, err := exec.CommandContext(ctx, tool).Output()
		all = append(all, iptablesSaved{save: tool, rules: rules, err: err})
	}
	return all
}

// iptablesChains lists the host's chains named as the node's are.
func iptablesChains(ctx context.Context) []string {
	var left []string
	for _, t := range saveIptables(ctx) {
		if t.err != nil {
			continue
		}
		for _, line := range strings.Split(string(t.rules), "\n") {
			if f := strings.Fields(line); strings.HasPrefix(line, ":") && len(f) > 0 && ourChain(f[0][1:]) {
				left = append(left, t.save+" "+f[0][1:])
			}
		}
	}
	return left
}

// mountsUnder lists mount points at or below any of dirs, deepest first.
func mountsUnder(dirs ...string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if slices.Contains(dirs, mp) || underAny(mp, dirs) {
			found = append(found, mp)
		}
	}
	sort.Slice(found, func(i, j int) bool { return len(found[i]) > len(found[j]) })
	return found, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts everything at or below dirs, deepest first; a busy
// mount is detached lazily so nothing below it can be reached by removal.
func unmountAll(dirs ...string) error {
	var errs []error
	for round := 0; round < 5; round++ {
		mounts, err := mountsUnder(dirs...)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		errs = nil
		for _, mp := range mounts {
			if err := syscall.Unmount(mp, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
					errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
				}
			}
		}
	}
	if mounts, _ := mountsUnder(dirs...); len(mounts) > 0 {
		errs = append(errs, fmt.Errorf("still mounted: %s", strings.Join(mounts, ", ")))
	}
	return errors.Join(errs...)
}

// loopDevice is an attached loop device and the file behind it.
type loopDevice struct{ device, backing string }

func loopDevices() []loopDevice {
	paths, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []loopDevice
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		name := filepath.Base(filepath.Dir(filepath.Dir(p)))
		devs = append(devs, loopDevice{device: "/dev/" + name, backing: strings.TrimSpace(string(b))})
	}
	return devs
}

// ourLoopDevices are those backed by a file under one of dirs, or by one of
// those devices (the kubelet pins a block volume with a loop device of its
// own).
func ourLoopDevices(dirs ...string) []loopDevice {
	all := loopDevices()
	ours := map[string]bool{}
	var found []loopDevice
	for changed := true; changed; {
		changed = false
		for _, d := range all {
			if ours[d.device] {
				continue
			}
			backing := strings.TrimSuffix(d.backing, " (deleted)")
			if underAny(backing, dirs) || ours[backing] {
				ours[d.device] = true
				found = append(found, d)
				changed = true
			}
		}
	}
	// Detach the pinning devices before the ones they pin.
	for i, j := 0, len(found)-1; i < j; i, j = i+1, j-1 {
		found[i], found[j] = found[j], found[i]
	}
	return found
}

func detachLoopDevices(ctx context.Context, dirs ...string) error {
	var errs []error
	for _, d := range ourLoopDevices(dirs...) {
		if out, err := exec.CommandContext(ctx, "losetup", "-d", d.device).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("losetup -d %s: %w: %s", d.device, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// containerLogLinks is where the kubelet links each container's log, at a
// fixed path whatever its podLogsDir: one link per container, into the
// podLogsDir of the node that runs it.
const containerLogLinks = "/var/log/containers"

// removeContainerLogLinks removes the links the kubelet of a node whose
// state is in one of dirs made; other nodes' links stay. Its pods' logs are
// in its directory (podLogsDir) and go with it.
func removeContainerLogLinks(links string, dirs ...string) error {
	var errs []error
	for _, link := range containerLogLinksInto(links, dirs...) {
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// containerLogLinksInto lists the links in links that point into one of
// dirs.
func containerLogLinksInto(links string, dirs ...string) []string {
	entries, err := os.ReadDir(links)
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range entries {
		link := filepath.Join(links, e.Name())
		target, err := os.Readlink(link)
		if err != nil {
			continue
		}
		for _, dir := range dirs {
			if within(target, dir) {
				found = append(found, link)
				break
			}
		}
	}
	return found
}

// Decoy is what another node on this machine (kind's, a kubeadm node's)
// leaves where ours would: a container log under /var/log/pods with its
// link in /var/log/containers, a process in a cgroup named kubepods, a
// KUBE- chain in the host's filter table and a pod's cni- network namespace
// in /run/netns. The e2e suite places one before the cluster starts and
// checks after it stops that all of it is untouched.
type Decoy struct {
	Log, Link string
	// Chain is in the host's filter table; Netns is pinned in /run/netns.
	Chain, Netns string
	// Cgroup holds Process; createdParent says whether its parent
	// (kubepods) was made for it.
	Cgroup        string
	createdParent bool
	Process       *os.Process
}

// PlaceDecoy writes the decoy log and link and starts the decoy process.
func PlaceDecoy() (*Decoy, error) {
	d := &Decoy{
		Log:    "/var/log/pods/datavolume-decoy_decoy_00000000-0000-0000-0000-000000000000/decoy/0.log",
		Link:   filepath.Join(containerLogLinks, "decoy_datavolume-decoy_decoy-0000.log"),
		Cgroup: filepath.Join(CgroupHierarchies, "pids", "kubepods", "datavolume-decoy"),
		Chain:  "KUBE-DECOY",
		Netns:  "cni-decoy",
	}
	// One left by a test run that was killed.
	_ = exec.Command("iptables", "-t", "filter", "-X", d.Chain).Run()
	_ = exec.Command("ip", "netns", "delete", d.Netns).Run()
	if out, err := exec.Command("iptables", "-t", "filter", "-N", d.Chain).CombinedOutput(); err != nil {
		return d, fmt.Errorf("creating the decoy chain: iptables -N %s: %w: %s", d.Chain, err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command("ip", "netns", "add", d.Netns).CombinedOutput(); err != nil {
		return d, fmt.Errorf("creating the decoy network namespace: ip netns add %s: %w: %s", d.Netns, err, bytes.TrimSpace(out))
	}
	if err := os.MkdirAll(filepath.Dir(d.Log), 0o755); err != nil {
		return d, err
	}
	if err := os.WriteFile(d.Log, []byte("another node's log\n"), 0o644); err != nil {
		return d, err
	}
	if err := os.MkdirAll(containerLogLinks, 0o755); err != nil {
		return d, err
	}
	_ = os.Remove(d.Link)
	if err := os.Symlink(d.Log, d.Link); err != nil {
		return d, err
	}
	if _, err := os.Stat(filepath.Dir(d.Cgroup)); errors.Is(err, os.ErrNotExist) {
		d.createdParent = true
	}
	if err := os.MkdirAll(d.Cgroup, 0o755); err != nil {
		return d, fmt.Errorf("creating the decoy cgroup: %w", err)
	}
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		return d, err
	}
	d.Process = cmd.Process
	go func() { _ = cmd.Wait() }() // reaped whenever it ends
	if err := os.WriteFile(filepath.Join(d.Cgroup, "cgroup.procs"), []byte(strconv.Itoa(d.Process.Pid)), 0o644); err != nil {
		return d, fmt.Errorf("moving the decoy process into its cgroup: %w", err)
	}
	return d, nil
}

// Touched says what of the decoy is gone.
func (d *Decoy) Touched() []string {
	var gone []string
	if _, err := os.Stat(d.Log); err != nil {
		gone = append(gone, "another node's pod log "+d.Log)
	}
	if _, err := os.Lstat(d.Link); err != nil {
		gone = append(gone, "another node's container log link "+d.Link)
	}
	if _, err := os.Stat(d.Cgroup); err != nil {
		gone = append(gone, "another node's cgroup "+d.Cgroup)
	}
	if d.Process == nil || d.Process.Signal(syscall.Signal(0)) != nil {
		gone = append(gone, "another node's process in "+d.Cgroup)
	}
	if exec.Command("iptables", "-t", "filter", "-S", d.Chain).Run() != nil {
		gone = append(gone, "another node's iptables chain "+d.Chain+" in the host's filter table")
	}
	if mounts, err := mountsUnder(filepath.Join(nodenet.NetnsDir, d.Netns)); err != nil || len(mounts) == 0 {
		gone = append(gone, "another node's network namespace "+filepath.Join(nodenet.NetnsDir, d.Netns))
	}
	return gone
}

// Remove removes the decoy.
func (d *Decoy) Remove() {
	if d.Chain != "" {
		_ = exec.Command("iptables", "-t", "filter", "-X", d.Chain).Run()
	}
	if d.Netns != "" {
		_ = exec.Command("ip", "netns", "delete", d.Netns).Run()
	}
	_ = os.Remove(d.Link)
	_ = os.RemoveAll(filepath.Dir(filepath.Dir(d.Log)))
	if d.Process != nil {
		_ = d.Process.Kill()
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := syscall.Rmdir(d.Cgroup); err == nil || errors.Is(err, syscall.ENOENT) {
			break
		}
	}
	if d.createdParent {
		_ = syscall.Rmdir(filepath.Dir(d.Cgroup))
	}
}

// within says whether path is dir or under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// NodeCgroupRoot is the kubelet's cgroupRoot (cgroupfs driver): it puts the
// pods in NodeCgroupRoot/kubepods, so that cleaning up kills and removes
// what is under it and never another node's /kubepods.
const NodeCgroupRoot = "datavolume"

// CgroupHierarchies is where the cgroups are mounted: one directory per v1
// hierarchy (and the hybrid layout's unified one), or the v2 tree itself.
const CgroupHierarchies = "/sys/fs/cgroup"

// unifiedCgroups says whether root is a cgroup v2 (unified) tree, whose
// root cgroup lists its controllers.
func unifiedCgroups(root string) bool {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return err == nil
}

// nodeCgroupDirs are where NodeCgroupRoot is under root: in every v1
// hierarchy, or once in a v2 tree.
func nodeCgroupDirs(root string) ([]string, error) {
	if unifiedCgroups(root) {
		return []string{filepath.Join(root, NodeCgroupRoot)}, nil
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading the cgroup hierarchies: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() { // co-mounted hierarchies appear as links too
			dirs = append(dirs, filepath.Join(root, e.Name(), NodeCgroupRoot))
		}
	}
	return dirs, nil
}

// CreateNodeCgroupRoot makes NodeCgroupRoot under root, as the kubelet
// requires of its cgroupRoot: in every v1 hierarchy, where a cpuset cgroup
// takes its parent's CPUs and memory nodes (or no process could join it);
// once in a v2 tree, where the kubelet enables the controllers it needs
// below it.
func CreateNodeCgroupRoot(root string) error {
	dirs, err := nodeCgroupDirs(root)
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		if unifiedCgroups(root) {
			continue
		}
		for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
			value, err := os.ReadFile(filepath.Join(filepath.Dir(dir), file))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, file), value, 0o644); err != nil {
				return fmt.Errorf("setting %s of cgroup %s: %w", file, dir, err)
			}
		}
	}
	return nil
}

// podCgroups lists the node's cgroup directories under root,
// NodeCgroupRoot included, deepest first.
func podCgroups(root string) []string {
	roots, _ := nodeCgroupDirs(root)
	var dirs []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// KillPodProcesses kills every process in the node's cgroups: the
// containers and their sandboxes, which outlive the kubelet and containerd.
// Another node's, in its own cgroups, live on.
func KillPodProcesses() {
	for _, dir := range podCgroups(CgroupHierarchies) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(field); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func removePodCgroups() error {
	var errs []error
	deadline := time.Now().Add(10 * time.Second)
	for _, dir := range podCgroups(CgroupHierarchies) {
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
				break
			}
			time.Sleep(100 * time.Millisecond) // processes are still exiting
		}
	}
	return errors.Join(errs...)
}

// hostProcess is a process and its command line.
type hostProcess struct {
	pid     int
	cmdline string
}

func (p hostProcess) String() string { return fmt.Sprintf("pid %d: %s", p.pid, p.cmdline) }

// processesOf lists the node's processes whose command line mentions one of
// dirs (and so the container shims serving a containerd whose socket is
// under one): a cluster component, never a user's program that names the
// directory.
func processesOf(dirs ...string) []hostProcess {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var found []hostProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if !clusterBinaries[executable(pid)] {
			continue // a user's shell, editor or tail that names the directory
		}
		for _, dir := range dirs {
			if strings.Contains(cmdline, dir+"/") || strings.Contains(cmdline, dir+" ") {
				found = append(found, hostProcess{pid: pid, cmdline: cmdline})
				break
			}
		}
	}
	return found
}

// clusterBinaries are the programs a node runs with its directory on their
// command line: only those are the node's processes.
var clusterBinaries = map[string]bool{
	"etcd": true, "kube-apiserver": true, "kube-controller-manager": true, "kube-scheduler": true,
	"kubelet": true, "kube-proxy": true, "containerd": true, "containerd-shim-runc-v2": true, "runc": true,
}

// executable is the base name of the program process pid runs.
func executable(pid int) string {
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
}

func killProcessesOf(dirs ...string) {
	for _, p := range processesOf(dirs...) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// underAny tells whether path is below one of dirs.
func underAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// HostState is what a node changes on the machine, read at one moment.
type HostState struct {
	Sysctls map[string]string
	// Bridge tells whether a link named as the node's bridge was on the host.
	Bridge bool
	// IptablesChains are the host's chains named as the node's are
	// (another node's, a decoy's).
	IptablesChains []string
}

// ReadHostState reads the machine's state before a cluster starts, for
// Leftovers to compare against after it stops. A run that was killed leaves
// its node's sysctls set and the settings from before it recorded; Start puts
// those back, so they, not the current values, are what Stop must leave.
func ReadHostState() (HostState, error) {
	sysctls, err := sysctlsBeforeAnyNode(ReadSysctls(), sysctlSnapshot)
	if err != nil {
		return HostState{}, err
	}
	return HostState{Sysctls: sysctls, Bridge: nodenet.LinkExists(nodenet.BridgeName), IptablesChains: iptablesChains(context.Background())}, nil
}

// sysctlsBeforeAnyNode is current with the values of the record at path, if
// one is there, laid over it.
func sysctlsBeforeAnyNode(current map[string]string, path string) (map[string]string, error) {
	recorded, err := readSysctlRecord(path)
	if err != nil {
		return nil, err
	}
	values := make(map[string]string, len(current))
	for key, value := range current {
		values[key] = value
	}
	for key, value := range recorded {
		if _, ok := values[key]; ok {
			values[key] = value
		}
	}
	return values, nil
}

// Leftovers lists what a stopped cluster whose state was in dir left on the
// machine: processes, mounts (the pods' network namespaces among them), loop
// devices, the node's network namespace and link, a bridge or iptables
// chains in the host's namespace that were not there before, cgroups and
// sysctls that differ from before.
func Leftovers(ctx context.Context, dir string, before HostState) []string {
	var left []string
	for _, p := range processesOf(dir) {
		left = append(left, p.String())
	}
	if mounts, err := mountsUnder(dir); err != nil {
		left = append(left, "reading mounts: "+err.Error())
	} else {
		for _, m := range mounts {
			left = append(left, "mount "+m)
		}
	}
	for _, d := range ourLoopDevices(dir) {
		left = append(left, "loop device "+d.device+" on "+d.backing)
	}
	left = append(left, nodenet.Left()...)
	for _, f := range nodenet.CNICacheFilesOf(nodenet.CNICacheDir) {
		left = append(left, "CNI cache file "+f)
	}
	for _, r := range nodenet.EgressRulesLeft(ctx) {
		left = append(left, "iptables rule "+strings.Join(r, " ")+" in the host's tables")
	}
	if nodenet.LinkExists(nodenet.BridgeName) && !before.Bridge {
		left = append(left, "bridge "+nodenet.BridgeName+" in the host's network namespace")
	}
	for _, c := range iptablesChains(ctx) {
		if !slices.Contains(before.IptablesChains, c) {
			left = append(left, "iptables chain "+c+" in the host's tables")
		}
	}
	for _, c := range podCgroups(CgroupHierarchies) {
		left = append(left, "cgroup "+c)
	}
	for _, l := range containerLogLinksInto(containerLogLinks, dir) {
		left = append(left, "container log link "+l)
	}
	now := ReadSysctls()
	for key, was := range before.Sysctls {
		if now[key] != was {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", key, now[key], was))
		}
	}
	sort.Strings(left)
	return left
}

// Clean removes everything a node whose state is in one of dirs may have
// left, whether it stopped cleanly or not. Each step runs even if one before
// failed. The host's iptables tables and /run/netns are not touched: the
// node's rules, bridge and pods' network namespaces go with its own
// namespace (the pods' are pinned under its directory, unmounted here).
func Clean(ctx context.Context, dirs ...string) error {
	KillPodProcesses()
	killProcessesOf(dirs...)
	time.Sleep(200 * time.Millisecond) // let killed processes release mounts
	errs := []error{
		unmountAll(dirs...),
		detachLoopDevices(ctx, dirs...),
		nodenet.Remove(ctx),
		nodenet.RemoveEgress(ctx),
		nodenet.RemoveCNICache(nodenet.CNICacheDir),
		removePodCgroups(),
		removeContainerLogLinks(containerLogLinks, dirs...),
		restoreSysctls(),
	}
	return errors.Join(errs...)
}
