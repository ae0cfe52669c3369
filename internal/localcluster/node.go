package localcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/datavolume/datavolume/internal/localcluster/janitor"
	"github.com/datavolume/datavolume/internal/localcluster/nodenet"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node's network, in its network namespace (netns.go): one bridge with
// a host-local pod range, Services and cluster DNS in the Service range
// (ranges.go). None of it leaves this machine.
const (
	// DefaultNodeName is the seed's: its local block PV names node01.
	DefaultNodeName = "node01"
	// cniBinDir is where Debian's containernetworking-plugins puts them.
	cniBinDir = "/usr/lib/cni"
)

// containerdSocket is where the node's containerd listens. A unix socket
// path must fit in 108 bytes.
func (c *Cluster) containerdSocket() string {
	return filepath.Join(c.cfg.Dir, "containerd", "containerd.sock")
}

// startContainerd runs Debian's containerd as a plain background process
// with its root, state and socket under the cluster's directory, in the
// node's network namespace: the CNI plugins it runs make the bridge there,
// and the pods' network namespaces are pinned under its state directory
// (netns_mounts_under_state_dir), not in the host's /run/netns.
func (c *Cluster) startContainerd(ctx context.Context, pauseImage string) error {
	dir := filepath.Join(c.cfg.Dir, "containerd")
	if n := len(c.containerdSocket()); n > 100 {
		return fmt.Errorf("containerd socket path %s is %d bytes, too long for a unix socket: use a shorter cluster directory", c.containerdSocket(), n)
	}
	cniConf := filepath.Join(c.cfg.Dir, "cni", "net.d")
	for _, d := range []string{dir, cniConf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := nodenet.WriteCNIConfig(cniConf, filepath.Join(c.cfg.Dir, "cni", "ipam"), c.ranges.Pods); err != nil {
		return err
	}
	// The facts of these machines: no CAP_SYS_RESOURCE (restrict the OOM
	// score), no AppArmor, cgroup v1 with the cgroupfs driver. Block
	// devices belong to the pod's user, so the data movers (uid 107, no
	// root) can write the volumes they fill.
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  device_ownership_from_security_context = true
  netns_mounts_under_state_dir = true
  # exec, attach and port-forward streams, for the kubelet only: the node's
  # own loopback.
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.containerdSocket(), c.containerdSocket()+".ttrpc",
		filepath.Join(dir, "opt"), pauseImage, cniBinDir, cniConf)
	configFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return err
	}
	bin, args := nodenet.InNodeNetns("containerd", "--config", configFile)
	proc, err := startProcess(c.cfg.Log, c.logDir, "containerd", bin, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, proc)
	c.containerd = proc
	return waitFor(ctx, "containerd", 30*time.Second, []*process{proc}, func(ctx context.Context) error {
		_, err := c.ctr(ctx, "version")
		return err
	})
}

// ctr runs containerd's own client against the node's containerd, in the
// namespace the CRI plugin uses.
func (c *Cluster) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.containerdSocket(), "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// podLogsDir is where the kubelet writes the pods' logs.
func (c *Cluster) podLogsDir() string { return filepath.Join(c.cfg.Dir, "pod-logs") }

// startKubelet runs the real kubelet as node nodeName in the node's network
// namespace, at the node's end of its link, with webhook authentication and
// authorization against kube-apiserver, with the cgroupfs driver.
func (c *Cluster) startKubelet(p *pkiSet) error {
	dir := filepath.Join(c.cfg.Dir, "kubelet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.cfg.Dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.nodeAPIServerURL(), p.ca.CertPEM(), p.kubeletClient); err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %[2]s
tlsPrivateKeyFile: %[3]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[4]s
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
# The pods' cgroups under a root of this node's own: cleaning up kills only
# what is in it.
cgroupRoot: /%[8]s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%[5]s
clusterDNS: [%[6]s]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serializeImagePulls: false
# A shared, busy build machine: evict only when truly out of room.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
shutdownGracePeriod: 0s
# Pods' logs stay in the cluster's directory, so that cleaning up touches no
# other node's in /var/log/pods.
podLogsDir: %[7]s
`, c.link.Node, p.kubeletServing.CertFile, p.kubeletServing.KeyFile, p.ca.CertFile, c.containerdSocket(), c.ranges.DNS, c.podLogsDir(), janitor.NodeCgroupRoot)
	if err := janitor.CreateNodeCgroupRoot(janitor.CgroupHierarchies); err != nil {
		return err
	}
	configFile := filepath.Join(c.cfg.Dir, "kubelet-config.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return err
	}
	bin, args := nodenet.InNodeNetns(filepath.Join(c.cfg.KubeBinDir, "kubelet"),
		"--config", configFile,
		"--kubeconfig", kubeconfig,
		"--root-dir", dir,
		"--hostname-override", c.cfg.NodeName,
		"--node-ip", c.link.Node.String(),
	)
	proc, err := startProcess(c.cfg.Log, c.logDir, "kubelet", bin, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, proc)
	c.kubelet = proc
	return nil
}

// startKubeProxy runs kube-proxy in iptables mode, in the node's network
// namespace (its rules are that namespace's), so pods reach Services, the
// kubernetes Service among them. It leaves conntrack limits alone and does
// not route localhost NodePorts, which would need more sysctls. Its health
// and metrics ports are on the namespace's own loopback.
func (c *Cluster) startKubeProxy(p *pkiSet) error {
	kubeconfig := filepath.Join(c.cfg.Dir, "kube-proxy.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.nodeAPIServerURL(), p.ca.CertPEM(), p.kubeProxy); err != nil {
		return err
	}
	// Any port is free on the namespace's own loopback.
	ports := []int{10256, 10249}
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
mode: iptables
clusterCIDR: %[3]s
bindAddress: %[4]s
healthzBindAddress: 127.0.0.1:%[5]d
metricsBindAddress: 127.0.0.1:%[6]d
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, c.cfg.NodeName, c.ranges.Pods, c.link.Node, ports[0], ports[1])
	configFile := filepath.Join(c.cfg.Dir, "kube-proxy-config.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return err
	}
	bin, args := nodenet.InNodeNetns(filepath.Join(c.cfg.KubeBinDir, "kube-proxy"), "--config", configFile)
	proc, err := startProcess(c.cfg.Log, c.logDir, "kube-proxy", bin, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, proc)
	c.kubeProxy = proc
	return nil
}

func (c *Cluster) startScheduler(p *pkiSet) error {
	kubeconfig := filepath.Join(c.cfg.Dir, "kube-scheduler.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.APIServerURL, p.ca.CertPEM(), p.scheduler); err != nil {
		return err
	}
	proc, err := startProcess(c.cfg.Log, c.logDir, "kube-scheduler", filepath.Join(c.cfg.KubeBinDir, "kube-scheduler"),
		"--kubeconfig", kubeconfig,
		"--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--leader-elect=false",
	)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, proc)
	return nil
}

// nodeAPIServerURL is kube-apiserver as the node reaches it: the host's end
// of the link, the kubernetes Service's endpoint.
func (c *Cluster) nodeAPIServerURL() string { return c.APIServerURL }

// waitForNodeReady waits until the kubelet has registered the node and
// reports it Ready.
func (c *Cluster) waitForNodeReady(ctx context.Context) error {
	client, err := c.adminClient()
	if err != nil {
		return err
	}
	return waitFor(ctx, "node "+c.cfg.NodeName+" Ready", 120*time.Second, c.procs, func(ctx context.Context) error {
		node, err := client.CoreV1().Nodes().Get(ctx, c.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s: %s", cond.Reason, cond.Message)
			}
		}
		return fmt.Errorf("node has no Ready condition yet")
	})
}

// importImages loads the image tarballs built by hack/build-images.sh into
// the node's containerd, where the kubelet finds them without a registry.
func (c *Cluster) importImages(ctx context.Context) error {
	for name, ref := range c.images {
		tarball := filepath.Join(c.cfg.ImagesDir, name+".tar")
		if _, err := c.ctr(ctx, "images", "import", tarball); err != nil {
			return fmt.Errorf("importing image %s (%s): %w", name, ref, err)
		}
	}
	return nil
}

// readImages reads images.json: logical image name → reference.
func readImages(dir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "images.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the images built by hack/build-images.sh (make images): %w", err)
	}
	images := map[string]string{}
	if err := json.Unmarshal(b, &images); err != nil {
		return nil, fmt.Errorf("reading %s/images.json: %w", dir, err)
	}
	for _, want := range []string{"pause", "coredns", "etcd", "local-path-provisioner", "demo-disk", "datavolume-apiserver", "datavolume-webhook", "datavolume-cloner"} {
		if images[want] == "" {
			return nil, fmt.Errorf("%s/images.json has no %q image: run make images", dir, want)
		}
	}
	return images, nil
}
