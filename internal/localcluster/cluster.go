// Package localcluster runs a real single-node Kubernetes cluster on this
// machine: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kube-proxy and the kubelet built from the Go module proxy, with Debian's
// containerd, runc and CNI plugins. Our components run in it as Pods
// deployed from artifacts/deploy, from images built without Docker
// (hack/build-images.sh). `make run` and the e2e tests both use it. Traffic
// stays on this machine: loopback, its own address and the pod bridge.
package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/datavolume/datavolume/internal/localcluster/janitor"
	"github.com/datavolume/datavolume/internal/localcluster/nodenet"
	"github.com/datavolume/datavolume/internal/localcluster/overlay"
	"github.com/datavolume/datavolume/internal/localcluster/pki"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says where the cluster keeps its state and finds its binaries.
type Config struct {
	// Dir holds certificates, data, volumes, logs and kubeconfigs. It is
	// reset at start.
	Dir string
	// KubeBinDir holds kube-apiserver, kube-controller-manager,
	// kube-scheduler, kube-proxy, kubelet and kubectl.
	KubeBinDir string
	// EtcdBinary is the etcd server of kube-apiserver.
	EtcdBinary string
	// ImagesDir holds the image tarballs and images.json written by
	// hack/build-images.sh.
	ImagesDir string
	// ArtifactsDir is the repository's artifacts directory.
	ArtifactsDir string
	// NodeName is the node's name; DefaultNodeName when empty.
	NodeName string
	// NodeLinkRange is the range of the link between the host and the
	// node's network namespace: the host's end takes its first address, the
	// node its second. nodenet.DefaultNodeLinkRange when empty.
	NodeLinkRange string
	// PodRange is the node's pod range (nodenet.DefaultPodRange when empty) and
	// ServiceRange the Services' (nodenet.DefaultServiceRange): both IPv4, apart
	// from each other, the link and the host's routes.
	PodRange, ServiceRange string
	// DurableEtcd makes kube-apiserver's etcd sync each write to disk, as
	// in a user's cluster (and as datavolume-apiserver's etcd, a Pod from
	// artifacts/deploy, always does). Off, it skips fsync: the cluster is
	// thrown away, and tests run faster.
	DurableEtcd bool
	// ControllerArgs are extra datavolume-controller arguments (the e2e
	// suite's test-only crash points).
	ControllerArgs []string
	// KubeAuditPolicy is kube-apiserver's audit policy file; empty for the
	// shipped one, ArtifactsDir/deploy/audit-policy.yaml.
	KubeAuditPolicy string
	// KubeProfiling serves kube-apiserver's /debug/pprof (to cluster
	// admins), for benchmarks that profile it; off in every other cluster.
	KubeProfiling bool
	// LockFile is held while the cluster runs: one node per machine.
	LockFile string
	// Log receives progress.
	Log logr.Logger
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg   Config
	procs []*process
	lock  *os.File
	// earlierDir is the directory the lock file names from a run that was
	// killed before it could stop: its mounts and loop devices may remain.
	earlierDir string

	// Kubeconfig is the cluster admin's kubeconfig (group system:masters).
	Kubeconfig string
	// AuditLog is datavolume-apiserver's audit log, written by its pod to a
	// directory of this host.
	AuditLog string
	// KubeAuditLog is kube-apiserver's audit log.
	KubeAuditLog string
	// APIServerURL is kube-apiserver's address: the host's end of the
	// node's link, an address of this host.
	APIServerURL string
	// KubeEtcdURL is the client URL of kube-apiserver's etcd, on loopback.
	KubeEtcdURL string

	ca       *pki.CA
	pkiDir   string
	logDir   string
	link     nodenet.Link
	ranges   nodenet.Ranges
	kubePort int
	images   map[string]string
	started  time.Time

	containerd, kubelet, kubeProxy *process
	// hostChanged says the node may have changed the machine, so Stop
	// must put it back.
	hostChanged bool
}

// ErrBusy means another local cluster holds the machine.
var ErrBusy = errors.New("another local cluster is running on this machine")

// Start brings the cluster up and returns once everything answers: the node
// is Ready, cluster DNS and our Pods are Ready, cdi.kubevirt.io is served
// through the aggregator, and both API servers call the webhook.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.NodeName == "" {
		cfg.NodeName = DefaultNodeName
	}
	if cfg.NodeLinkRange == "" {
		cfg.NodeLinkRange = nodenet.DefaultNodeLinkRange
	}
	if cfg.PodRange == "" {
		cfg.PodRange = nodenet.DefaultPodRange
	}
	if cfg.ServiceRange == "" {
		cfg.ServiceRange = nodenet.DefaultServiceRange
	}
	// Pods mount volumes from under it by absolute host paths.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	c := &Cluster{cfg: cfg, started: time.Now()}
	if err := c.acquireLock(); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		// Whatever did start is stopped; the error says what failed.
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	cfg := c.cfg
	var err error
	if c.images, err = readImages(cfg.ImagesDir); err != nil {
		return err
	}
	if c.link, err = nodenet.ParseLink(cfg.NodeLinkRange); err != nil {
		return err
	}
	if c.ranges, err = nodenet.ParseRanges(cfg.PodRange, cfg.ServiceRange, c.link); err != nil {
		return err
	}
	if err := nodenet.CheckHostRoutes(cfg.PodRange, cfg.ServiceRange, cfg.NodeLinkRange); err != nil {
		return err
	}
	// A run that did not stop cleanly may have left mounts under the
	// directory: unmount before removing, or removal would reach into them.
	if err := janitor.CheckStateDir(cfg.Dir); err != nil {
		return err
	}
	if c.earlierDir != "" {
		if err := janitor.CheckStateDir(c.earlierDir); err != nil {
			cfg.Log.Info("not cleaning up the directory of a run that was killed", "dir", c.earlierDir, "reason", err.Error())
			c.earlierDir = ""
		}
	}
	c.hostChanged = true
	dirs := c.stateDirs()
	if len(dirs) > 1 {
		cfg.Log.Info("cleaning up after a run that was killed", "dir", dirs[1])
	}
	if err := janitor.Clean(ctx, dirs...); err != nil {
		return fmt.Errorf("cleaning up after an earlier run: %w", err)
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return fmt.Errorf("resetting %s: %w", cfg.Dir, err)
	}
	c.pkiDir, c.logDir = filepath.Join(cfg.Dir, "pki"), filepath.Join(cfg.Dir, "logs")
	for _, d := range []string{c.pkiDir, c.logDir, filepath.Join(cfg.Dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := janitor.MarkStateDir(cfg.Dir); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(cfg.Dir, "kubeconfig")
	c.KubeAuditLog = filepath.Join(cfg.Dir, "kube-audit.log")
	if err := c.prepareHost(ctx); err != nil {
		return err
	}

	ports, err := freePorts("127.0.0.1", 2)
	if err != nil {
		return err
	}
	etcdPort, etcdPeer := ports[0], ports[1]
	c.KubeEtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	if ports, err = freePorts(c.link.Host.String(), 1); err != nil {
		return err
	}
	c.kubePort = ports[0]
	c.APIServerURL = "https://" + net.JoinHostPort(c.link.Host.String(), strconv.Itoa(c.kubePort))

	pki, err := c.makePKI()
	if err != nil {
		return err
	}

	// containerd and the images need nothing else: load them meanwhile.
	runtimeReady := make(chan error, 1)
	go func() { runtimeReady <- c.startRuntime(ctx) }()

	kubeEtcd, err := c.startEtcd("etcd", etcdPort, etcdPeer)
	if err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort)
	if err := waitFor(ctx, "etcd", 30*time.Second, []*process{kubeEtcd}, httpOK(http.DefaultClient, url)); err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	kubeAPI, err := c.startKubeAPIServer(pki, etcdPort)
	if err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	adminHTTP, err := c.httpClient(pki.admin)
	if err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	if err := waitFor(ctx, "kube-apiserver", 90*time.Second, []*process{kubeAPI}, httpOK(adminHTTP, c.APIServerURL+"/readyz")); err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	cfg.Log.Info("kube-apiserver ready", "url", c.APIServerURL, "after", c.since())
	// The admin kubeconfig is needed from here on; `make run` announces it
	// only once everything answers.
	if err := writeKubeconfig(c.Kubeconfig, c.APIServerURL, pki.ca.CertPEM(), pki.admin); err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	if err := c.startControllerManager(pki); err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	if err := c.startScheduler(pki); err != nil {
		return errors.Join(err, <-runtimeReady)
	}
	if err := <-runtimeReady; err != nil {
		return err
	}
	cfg.Log.Info("containerd ready, images imported", "images", len(c.images), "after", c.since())

	if err := c.startKubelet(pki); err != nil {
		return err
	}
	if err := c.startKubeProxy(pki); err != nil {
		return err
	}
	if err := c.waitForNodeReady(ctx); err != nil {
		return err
	}
	cfg.Log.Info("node ready", "node", cfg.NodeName, "address", c.link.Node.String(), "netns", nodenet.NodeNetns, "after", c.since())

	if err := c.deployAddons(ctx); err != nil {
		return err
	}
	if err := c.deployDataVolume(ctx, pki, adminHTTP); err != nil {
		return err
	}
	cfg.Log.Info("cluster ready", "kubeconfig", c.Kubeconfig, "after", c.since())
	return nil
}

func (c *Cluster) since() time.Duration { return time.Since(c.started).Round(time.Millisecond) }

// prepareHost records the sysctls the node changes (the kubelet's kernel
// settings and the host's forwarding), so that Stop can put them back, and
// makes the node's network namespace and its link to the host. The host's
// routes to the pods and Services go through the link, and the node's
// traffic to other networks out through the host.
func (c *Cluster) prepareHost(ctx context.Context) error {
	if err := janitor.SaveSysctls(); err != nil {
		return err
	}
	if err := nodenet.Create(ctx, c.link, c.cfg.PodRange, c.cfg.ServiceRange); err != nil {
		return err
	}
	// The host forwards the node's traffic out (saved above, put back at stop).
	if err := janitor.WriteSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	return nodenet.EnableEgress(ctx, c.link)
}

// startRuntime starts containerd and imports the images into it.
func (c *Cluster) startRuntime(ctx context.Context) error {
	if err := c.startContainerd(ctx, c.images["pause"]); err != nil {
		return err
	}
	return c.importImages(ctx)
}

// pkiSet is the certificates of one cluster.
type pkiSet struct {
	ca, frontProxyCA              *pki.CA
	kubeServing, frontProxyClient pki.KeyPair
	admin, controllerManager      pki.KeyPair
	scheduler, kubeProxy          pki.KeyPair
	kubeletClient, kubeletServing pki.KeyPair
	apiserverKubeletClient        pki.KeyPair
	dvServing, webhookServing     pki.KeyPair
	// etcdCA signs datavolume-apiserver's etcd's certificates and the one
	// client certificate it answers; webhookClientCA the certificates of the
	// webhook's two callers. Both are CAs of their own: the cluster's pki.CA
	// signs any approved user's certificate.
	etcdCA, webhookClientCA            *pki.CA
	etcdServing, etcdClient            pki.KeyPair
	kubeWebhookClient, dvWebhookClient pki.KeyPair
	saKey, saPub                       string
}

func (c *Cluster) makePKI() (*pkiSet, error) {
	var p pkiSet
	var err error
	dir := c.pkiDir
	if p.ca, err = pki.NewCA(dir, "ca"); err != nil {
		return nil, err
	}
	c.ca = p.ca
	if p.frontProxyCA, err = pki.NewCA(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	issue := func(kp *pki.KeyPair, ca *pki.CA, name, cn string, orgs []string, hosts ...string) {
		if err == nil {
			*kp, err = ca.Issue(dir, name, cn, orgs, hosts...)
		}
	}
	node, ip := c.cfg.NodeName, c.link.Node.String()
	issue(&p.kubeServing, p.ca, "kube-apiserver", "kube-apiserver", nil,
		c.link.Host.String(), c.ranges.KubernetesService.String(), "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
	issue(&p.frontProxyClient, p.frontProxyCA, "front-proxy-client", "front-proxy-client", nil)
	issue(&p.admin, p.ca, "admin", "kubernetes-admin", []string{"system:masters"})
	issue(&p.controllerManager, p.ca, "kube-controller-manager", "system:kube-controller-manager", nil)
	issue(&p.scheduler, p.ca, "kube-scheduler", "system:kube-scheduler", nil)
	issue(&p.kubeProxy, p.ca, "kube-proxy", "system:kube-proxy", nil)
	// The Node authorizer and NodeRestriction know the kubelet by this name.
	issue(&p.kubeletClient, p.ca, "kubelet-client", "system:node:"+node, []string{"system:nodes"})
	issue(&p.kubeletServing, p.ca, "kubelet", node, nil, node, ip)
	issue(&p.apiserverKubeletClient, p.ca, "kube-apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"})
	// The aggregator and the webhook clients check the serving certificates
	// against the Services' DNS names.
	issue(&p.dvServing, p.ca, overlay.APIServerName, overlay.APIServerName, nil, serviceHosts(overlay.APIServerName)...)
	issue(&p.webhookServing, p.ca, overlay.WebhookName, overlay.WebhookName, nil, serviceHosts(overlay.WebhookName)...)
	if err != nil {
		return nil, err
	}
	if p.etcdCA, err = pki.NewCA(dir, "datavolume-etcd-ca"); err != nil {
		return nil, err
	}
	if p.webhookClientCA, err = pki.NewCA(dir, "datavolume-webhook-client-ca"); err != nil {
		return nil, err
	}
	// The members' certificate serves clients and peers alike.
	issue(&p.etcdServing, p.etcdCA, "datavolume-etcd", "datavolume-etcd", nil, etcdHosts()...)
	issue(&p.etcdClient, p.etcdCA, "datavolume-etcd-client", overlay.APIServerName, nil)
	// The names the webhook's --allowed-client-names admits.
	issue(&p.kubeWebhookClient, p.webhookClientCA, "kube-apiserver-webhook-client", "kube-apiserver", nil)
	issue(&p.dvWebhookClient, p.webhookClientCA, "datavolume-apiserver-webhook-client", overlay.APIServerName, nil)
	if err != nil {
		return nil, err
	}
	if p.saKey, p.saPub, err = pki.NewServiceAccountKey(dir); err != nil {
		return nil, err
	}
	return &p, nil
}

// etcdHosts are the names of datavolume-apiserver's etcd: its Service and
// each member of its StatefulSet, and loopback for the member itself.
func etcdHosts() []string {
	const service = "datavolume-etcd." + overlay.SystemNamespace + ".svc"
	return []string{service, service + ".cluster.local", "*." + service, "*." + service + ".cluster.local", "localhost", "127.0.0.1"}
}

// serviceHosts are the names a Service of ours answers to in the cluster.
func serviceHosts(name string) []string {
	svc := name + "." + overlay.SystemNamespace + ".svc"
	return []string{svc, svc + ".cluster.local"}
}

func (c *Cluster) startEtcd(name string, port, peer int) (*process, error) {
	client := fmt.Sprintf("http://127.0.0.1:%d", port)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	args := []string{
		"--name", name,
		"--data-dir", filepath.Join(c.cfg.Dir, "data", name),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", name + "=" + peerURL,
	}
	if !c.cfg.DurableEtcd {
		args = append(args, "--unsafe-no-fsync") // a throwaway cluster; fsync only slows tests
	}
	p, err := startProcess(c.cfg.Log, c.logDir, name, c.cfg.EtcdBinary, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *Cluster) startKubeAPIServer(p *pkiSet, etcdPort int) (*process, error) {
	policy := c.cfg.KubeAuditPolicy
	if policy == "" {
		policy = filepath.Join(c.cfg.ArtifactsDir, "deploy", "audit-policy.yaml")
	}
	admission, err := writeWebhookAdmissionConfig(c.cfg.Dir, overlay.WebhookName+"."+overlay.SystemNamespace+".svc", p.kubeWebhookClient)
	if err != nil {
		return nil, err
	}
	proc, err := startProcess(c.cfg.Log, c.logDir, "kube-apiserver", filepath.Join(c.cfg.KubeBinDir, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		// The host's end of the node's link only: kubectl on this host,
		// the node and the pods (the kubernetes Service's endpoint) reach
		// it there; not on the machine's network addresses.
		"--bind-address", c.link.Host.String(), "--advertise-address", c.link.Host.String(), "--secure-port", strconv.Itoa(c.kubePort),
		"--tls-cert-file", p.kubeServing.CertFile, "--tls-private-key-file", p.kubeServing.KeyFile,
		"--client-ca-file", p.ca.CertFile,
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--kubelet-client-certificate", p.apiserverKubeletClient.CertFile, "--kubelet-client-key", p.apiserverKubeletClient.KeyFile,
		"--kubelet-certificate-authority", p.ca.CertFile,
		// The node's name does not resolve on this machine; its address does.
		"--kubelet-preferred-address-types", "InternalIP",
		"--service-cluster-ip-range", c.cfg.ServiceRange,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.saPub, "--service-account-signing-key-file", p.saKey,
		// The aggregation layer's front proxy; APIServices and webhooks are
		// reached at their pods' addresses, so the host needs no Service
		// routing of its own.
		"--requestheader-client-ca-file", p.frontProxyCA.CertFile,
		"--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User",
		"--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", p.frontProxyClient.CertFile, "--proxy-client-key-file", p.frontProxyClient.KeyFile,
		"--enable-aggregator-routing=true",
		"--audit-policy-file", policy, "--audit-log-path", c.KubeAuditLog,
		// Its webhook calls present a client certificate to datavolume-webhook.
		"--admission-control-config-file", admission,
		"--profiling="+strconv.FormatBool(c.cfg.KubeProfiling),
	)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, proc)
	return proc, nil
}

func (c *Cluster) startControllerManager(p *pkiSet) error {
	kubeconfig := filepath.Join(c.cfg.Dir, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.APIServerURL, p.ca.CertPEM(), p.controllerManager); err != nil {
		return err
	}
	proc, err := startProcess(c.cfg.Log, c.logDir, "kube-controller-manager", filepath.Join(c.cfg.KubeBinDir, "kube-controller-manager"),
		"--kubeconfig", kubeconfig,
		"--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--controllers", "*",
		"--leader-elect=false",
		"--use-service-account-credentials",
		"--service-account-private-key-file", p.saKey,
		"--root-ca-file", p.ca.CertFile,
		"--cluster-signing-cert-file", filepath.Join(c.pkiDir, "ca.crt"),
		"--cluster-signing-key-file", filepath.Join(c.pkiDir, "ca.key"),
	)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, proc)
	return nil
}

// Stop stops the node and the control plane, removes what the node left on
// the machine (containers, mounts, loop devices, network namespaces, the
// bridge, iptables chains, cgroups, sysctls), and releases the machine.
// The directory stays for inspection.
func (c *Cluster) Stop() error {
	var errs []error
	// The kubelet first, so it restarts nothing; then the containers, which
	// outlive it and containerd; then containerd and the control plane.
	for _, p := range []*process{c.kubelet, c.kubeProxy} {
		if p != nil {
			errs = append(errs, p.stop(10*time.Second))
		}
	}
	if c.hostChanged {
		janitor.KillPodProcesses()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		if err := c.procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	c.procs = nil
	if c.hostChanged {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errs = append(errs, janitor.Clean(ctx, c.stateDirs()...))
		cancel()
		c.hostChanged = false
	}
	if c.lock != nil {
		if errors.Join(errs...) == nil {
			// Nothing of this run is left for the next one to clean up.
			_ = c.lock.Truncate(0)
		}
		_ = syscall.Flock(int(c.lock.Fd()), syscall.LOCK_UN)
		c.lock.Close()
		c.lock = nil
	}
	return errors.Join(errs...)
}

// stateDirs are the directories whose node state this cluster cleans up:
// its own, and that of a run that was killed, which the lock file named.
// Stop cleans both too, so a start that failed half-way leaves neither.
func (c *Cluster) stateDirs() []string {
	if c.earlierDir != "" && c.earlierDir != c.cfg.Dir {
		return []string{c.cfg.Dir, c.earlierDir}
	}
	return []string{c.cfg.Dir}
}

// CloneGrantKeysDir holds the keys datavolume-apiserver signs clone grants
// with, as its Secret holds them.
func (c *Cluster) CloneGrantKeysDir() string { return filepath.Join(c.pkiDir, "clone-grant-keys") }

// DataVolumeEtcdCAFile is the pki.CA of datavolume-apiserver's etcd: its
// serving certificate, and the one client certificate it answers.
func (c *Cluster) DataVolumeEtcdCAFile() string {
	return filepath.Join(c.pkiDir, "datavolume-etcd-ca.crt")
}

// DataVolumeEtcdClientTLS is datavolume-apiserver's TLS configuration for
// its etcd, reaching a member by any address: for tests that write past the
// API, as only the holder of that certificate can.
func (c *Cluster) DataVolumeEtcdClientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.pkiDir, "datavolume-etcd-client.crt"), filepath.Join(c.pkiDir, "datavolume-etcd-client.key"))
	if err != nil {
		return nil, fmt.Errorf("loading the etcd client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(c.DataVolumeEtcdCAFile())
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", c.DataVolumeEtcdCAFile())
	}
	// Verified for the Service's name whatever address is dialled (gRPC puts
	// the address in ServerName).
	name := "datavolume-etcd." + overlay.SystemNamespace + ".svc"
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// Not skipped: VerifyConnection verifies the chain and the name.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(state tls.ConnectionState) error {
			if len(state.PeerCertificates) == 0 {
				return errors.New("etcd presented no certificate")
			}
			intermediates := x509.NewCertPool()
			for _, c := range state.PeerCertificates[1:] {
				intermediates.AddCert(c)
			}
			_, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: name})
			return err
		},
	}, nil
}

// Image is the reference of an image built by hack/build-images.sh and
// imported into the node, by its logical name ("datavolume-cloner").
func (c *Cluster) Image(name string) string { return c.images[name] }

// NodeIP is node01's address: the node's end of its link, in its network
// namespace (the kubelet's, the node's InternalIP).
func (c *Cluster) NodeIP() net.IP { return c.link.Node }

// HostAddressForPods is the address of this host that pods reach: the host's
// end of the node's link. Servers on this host that pods must reach (test
// HTTP, TLS and registry servers) listen there; pods reach neither the
// host's loopback nor, from the node's namespace, its other addresses'
// services unless they listen on every address.
func (c *Cluster) HostAddressForPods() net.IP { return c.link.Host }

// LogDir is where each component's log is.
func (c *Cluster) LogDir() string { return c.logDir }

// Client returns a clientset for the cluster admin.
func (c *Cluster) Client() (*kubernetes.Clientset, error) { return c.adminClient() }

func (c *Cluster) adminClient() (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// UserKubeconfig writes a kubeconfig for a user with the given groups,
// authenticated by a client certificate, and returns its path.
func (c *Cluster) UserKubeconfig(name string, groups ...string) (string, error) {
	safe := strings.NewReplacer(":", "_", "/", "_").Replace(name)
	kp, err := c.ca.Issue(c.pkiDir, "user-"+safe, name, groups)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.cfg.Dir, "user-"+safe+".kubeconfig")
	return path, writeKubeconfig(path, c.APIServerURL, c.ca.CertPEM(), kp)
}

// Kubectl runs the real kubectl as the admin, with stdin when given, and
// returns its standard output.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	return c.kubectlAs(ctx, c.Kubeconfig, stdin, args...)
}

// KubectlBinary is the path of the kubectl the cluster uses.
func (c *Cluster) KubectlBinary() string { return filepath.Join(c.cfg.KubeBinDir, "kubectl") }

func (c *Cluster) kubectlAs(ctx context.Context, kubeconfig, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.KubectlBinary(), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	kp := pki.KeyPair{CertFile: filepath.Join(c.pkiDir, "admin.crt"), KeyFile: filepath.Join(c.pkiDir, "admin.key")}
	return c.httpClient(kp)
}

func (c *Cluster) httpClient(client pki.KeyPair) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert)
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}},
	}, nil
}

// lockHolder is what the lock file says while a cluster runs.
func lockHolder(pid int, dir string) string {
	return fmt.Sprintf("pid %d, directory %s", pid, dir)
}

// lockHolderDir is the directory a lock file's content names, or "".
func lockHolderDir(content string) string {
	_, dir, ok := strings.Cut(strings.TrimSpace(content), ", directory ")
	if !ok || !filepath.IsAbs(dir) {
		return ""
	}
	return filepath.Clean(dir)
}

// acquireLock takes the machine-wide lock, or says who holds it.
func (c *Cluster) acquireLock() error {
	if c.cfg.LockFile == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.cfg.LockFile), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(c.cfg.LockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("opening lock %s: %w", c.cfg.LockFile, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(c.cfg.LockFile)
		f.Close()
		return fmt.Errorf("%w (%s); stop it first (Ctrl-C where `make run` runs)", ErrBusy, strings.TrimSpace(string(holder)))
	}
	// The lock is free, so whoever wrote the file has stopped: cleanly if it
	// emptied the file, else killed, with its state left in its directory.
	if earlier, err := io.ReadAll(f); err == nil {
		c.earlierDir = lockHolderDir(string(earlier))
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return fmt.Errorf("writing lock %s: %w", c.cfg.LockFile, err)
	}
	if _, err := f.WriteAt([]byte(lockHolder(os.Getpid(), c.cfg.Dir)), 0); err != nil {
		f.Close()
		return fmt.Errorf("writing lock %s: %w", c.cfg.LockFile, err)
	}
	c.lock = f
	return nil
}

func httpOK(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// freePorts finds n free TCP ports on the host's address ip.
func freePorts(ip string, n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
