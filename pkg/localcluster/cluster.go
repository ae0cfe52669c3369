// Package localcluster runs a real Kubernetes control plane on this machine —
// etcd, kube-apiserver and kube-controller-manager built from the Go module
// proxy — with datavolume-apiserver behind its aggregation layer and
// datavolume-webhook admitting DataVolumes and VirtualMachines. `make run`
// and the e2e tests both use it. All traffic stays on loopback.
package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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

	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// Names of the aggregated server's objects, as in artifacts/deploy.
const (
	systemNamespace = "datavolume-system"
	apiserverName   = "datavolume-apiserver"
)

// Config says where the cluster keeps its state and finds its binaries.
type Config struct {
	// Dir holds certificates, data, logs and kubeconfigs. It is reset at start.
	Dir string
	// KubeBinDir holds kube-apiserver, kube-controller-manager and kubectl.
	KubeBinDir string
	// EtcdBinary is the etcd server.
	EtcdBinary string
	// APIServerBinary is datavolume-apiserver.
	APIServerBinary string
	// WebhookBinary is datavolume-webhook.
	WebhookBinary string
	// ArtifactsDir is the repository's artifacts directory.
	ArtifactsDir string
	// LockFile is held while the cluster runs, so two clusters that cannot
	// share the machine never run at once.
	LockFile string
	// Log receives progress.
	Log logr.Logger
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg   Config
	procs []*process
	lock  *os.File

	// Kubeconfig is the cluster admin's kubeconfig (group system:masters).
	Kubeconfig string
	// AuditLog is datavolume-apiserver's audit log.
	AuditLog string
	// KubeAuditLog is kube-apiserver's audit log.
	KubeAuditLog string
	// APIServerURL is kube-apiserver's address.
	APIServerURL string

	ca      *CA
	pkiDir  string
	logDir  string
	dvProc  *process
	dvArgs  []string
	dvPort  int
	started time.Time

	// bootstrapKubeconfig is the admin's, for deploying before the cluster is ready.
	bootstrapKubeconfig string
}

// ErrBusy means another local cluster holds the machine.
var ErrBusy = errors.New("another local cluster is running on this machine")

// Start brings the cluster up and returns once everything answers:
// kube-apiserver is ready, cdi.kubevirt.io is served through it, and both
// API servers call the webhook.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
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

	if err := os.RemoveAll(cfg.Dir); err != nil {
		return fmt.Errorf("resetting %s: %w", cfg.Dir, err)
	}
	c.pkiDir, c.logDir = filepath.Join(cfg.Dir, "pki"), filepath.Join(cfg.Dir, "logs")
	for _, d := range []string{c.pkiDir, c.logDir, filepath.Join(cfg.Dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	c.Kubeconfig = filepath.Join(cfg.Dir, "kubeconfig")
	c.AuditLog = filepath.Join(cfg.Dir, "audit.log")
	c.KubeAuditLog = filepath.Join(cfg.Dir, "kube-audit.log")

	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	etcdPort, etcdPeer, dvEtcdPort, dvEtcdPeer, kubePort, dvPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	c.dvPort = dvPort
	c.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(kubePort)

	pki, err := c.makePKI()
	if err != nil {
		return err
	}

	// etcd of kube-apiserver, and the aggregated server's own etcd.
	kubeEtcd, err := c.startEtcd("etcd", etcdPort, etcdPeer)
	if err != nil {
		return err
	}
	dvEtcd, err := c.startEtcd("etcd-datavolume", dvEtcdPort, dvEtcdPeer)
	if err != nil {
		return err
	}
	for _, e := range []struct {
		p    *process
		port int
	}{{kubeEtcd, etcdPort}, {dvEtcd, dvEtcdPort}} {
		url := fmt.Sprintf("http://127.0.0.1:%d/health", e.port)
		if err := waitFor(ctx, e.p.name, 30*time.Second, []*process{e.p}, httpOK(http.DefaultClient, url)); err != nil {
			return err
		}
	}

	kubeAPI, err := c.startKubeAPIServer(pki, etcdPort, kubePort)
	if err != nil {
		return err
	}
	adminHTTP, err := c.httpClient(pki.admin)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-apiserver", 90*time.Second, []*process{kubeAPI}, httpOK(adminHTTP, c.APIServerURL+"/readyz")); err != nil {
		return err
	}
	cfg.Log.Info("kube-apiserver ready", "url", c.APIServerURL, "after", time.Since(c.started).Round(time.Millisecond))

	if err := c.startControllerManager(pki); err != nil {
		return err
	}

	// Our RBAC and APIServices, from the manifests a user deploys.
	if err := c.deployAggregatedAPI(ctx, pki); err != nil {
		return err
	}
	if err := c.startDataVolumeAPIServer(pki, dvEtcdPort); err != nil {
		return err
	}
	discovery := c.APIServerURL + "/apis/cdi.kubevirt.io/v1beta1"
	if err := waitFor(ctx, "cdi.kubevirt.io through the aggregator", 90*time.Second, c.procs, httpOK(adminHTTP, discovery)); err != nil {
		return err
	}
	if err := c.deployWebhook(ctx, adminHTTP); err != nil {
		return err
	}
	// The admin kubeconfig is written only once everything answers.
	if err := writeKubeconfig(c.Kubeconfig, c.APIServerURL, pki.ca.CertPEM(), pki.admin); err != nil {
		return err
	}
	cfg.Log.Info("cluster ready", "kubeconfig", c.Kubeconfig, "after", time.Since(c.started).Round(time.Millisecond))
	return nil
}

// pkiSet is the certificates of one cluster.
type pkiSet struct {
	ca, frontProxyCA              *CA
	kubeServing, frontProxyClient KeyPair
	admin, controllerManager      KeyPair
	dvServing, dvClient           KeyPair
	saKey, saPub                  string
}

func (c *Cluster) makePKI() (*pkiSet, error) {
	var p pkiSet
	var err error
	dir := c.pkiDir
	if p.ca, err = NewCA(dir, "ca"); err != nil {
		return nil, err
	}
	c.ca = p.ca
	if p.frontProxyCA, err = NewCA(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	issue := func(kp *KeyPair, ca *CA, name, cn string, orgs []string, hosts ...string) {
		if err == nil {
			*kp, err = ca.Issue(dir, name, cn, orgs, hosts...)
		}
	}
	issue(&p.kubeServing, p.ca, "kube-apiserver", "kube-apiserver", nil,
		"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
	issue(&p.frontProxyClient, p.frontProxyCA, "front-proxy-client", "front-proxy-client", nil)
	issue(&p.admin, p.ca, "admin", "kubernetes-admin", []string{"system:masters"})
	issue(&p.controllerManager, p.ca, "kube-controller-manager", "system:kube-controller-manager", nil)
	// The aggregator checks the serving certificate against the Service's DNS name.
	issue(&p.dvServing, p.ca, "datavolume-apiserver", apiserverName, nil,
		apiserverName+"."+systemNamespace+".svc", "localhost", "127.0.0.1")
	// Run on the host, the server authenticates as its ServiceAccount would,
	// so the RBAC of artifacts/deploy applies unchanged.
	issue(&p.dvClient, p.ca, "datavolume-apiserver-client", "system:serviceaccount:"+systemNamespace+":"+apiserverName,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace})
	if err != nil {
		return nil, err
	}
	if p.saKey, p.saPub, err = newServiceAccountKey(dir); err != nil {
		return nil, err
	}
	return &p, nil
}

func (c *Cluster) startEtcd(name string, port, peer int) (*process, error) {
	client := fmt.Sprintf("http://127.0.0.1:%d", port)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	p, err := startProcess(c.cfg.Log, c.logDir, name, c.cfg.EtcdBinary,
		"--name", name,
		"--data-dir", filepath.Join(c.cfg.Dir, "data", name),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", name+"="+peerURL,
		"--unsafe-no-fsync", // a throwaway cluster; fsync only slows tests
	)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *Cluster) startKubeAPIServer(p *pkiSet, etcdPort, port int) (*process, error) {
	policy := filepath.Join(c.cfg.ArtifactsDir, "deploy", "audit-policy.yaml")
	proc, err := startProcess(c.cfg.Log, c.logDir, "kube-apiserver", filepath.Join(c.cfg.KubeBinDir, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
		// Advertising loopback: no endpoint reconciling of the kubernetes Service.
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", p.kubeServing.CertFile, "--tls-private-key-file", p.kubeServing.KeyFile,
		"--client-ca-file", p.ca.CertFile,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.saPub, "--service-account-signing-key-file", p.saKey,
		// The aggregation layer's front proxy.
		"--requestheader-client-ca-file", p.frontProxyCA.CertFile,
		"--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User",
		"--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", p.frontProxyClient.CertFile, "--proxy-client-key-file", p.frontProxyClient.KeyFile,
		"--audit-policy-file", policy, "--audit-log-path", c.KubeAuditLog,
		"--profiling=false",
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

// deployAggregatedAPI applies the aggregated server's manifests from
// artifacts/deploy, and points its Service at the server on this host.
func (c *Cluster) deployAggregatedAPI(ctx context.Context, p *pkiSet) error {
	admin := filepath.Join(c.cfg.Dir, "admin-bootstrap.kubeconfig")
	if err := writeKubeconfig(admin, c.APIServerURL, p.ca.CertPEM(), p.admin); err != nil {
		return err
	}
	c.bootstrapKubeconfig = admin
	deploy := filepath.Join(c.cfg.ArtifactsDir, "deploy")
	for _, f := range []string{"namespace.yaml", "apiserver/serviceaccount.yaml", "apiserver/rbac.yaml", "apiserver/user-roles.yaml", "apiserver/apiservice.yaml"} {
		if _, err := c.kubectlAs(ctx, admin, "", "apply", "-f", filepath.Join(deploy, f)); err != nil {
			return err
		}
	}
	// The server runs on this host: the Service names it by an external name,
	// and the APIService uses the server's port (an ExternalName Service has
	// no port mapping).
	service := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: %s
spec:
  type: ExternalName
  externalName: localhost
  ports:
  - port: %d
`, apiserverName, systemNamespace, c.dvPort)
	if _, err := c.kubectlAs(ctx, admin, service, "apply", "-f", "-"); err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"spec":{"caBundle":%q,"service":{"port":%d}}}`, encodeBase64(p.ca.CertPEM()), c.dvPort)
	for _, v := range []string{"v1beta1", "v1alpha1"} {
		if _, err := c.kubectlAs(ctx, admin, "", "patch", "apiservice", v+".cdi.kubevirt.io", "--type=merge", "-p", patch); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startDataVolumeAPIServer(p *pkiSet, etcdPort int) error {
	kubeconfig := filepath.Join(c.cfg.Dir, "datavolume-apiserver.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.APIServerURL, p.ca.CertPEM(), p.dvClient); err != nil {
		return err
	}
	keys := filepath.Join(c.cfg.Dir, "clone-grant-keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	if err := cloneauth.GenerateKey(keys, "key-1"); err != nil {
		return fmt.Errorf("generating clone grant key: %w", err)
	}
	c.dvArgs = []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(c.dvPort),
		"--tls-cert-file", p.dvServing.CertFile, "--tls-private-key-file", p.dvServing.KeyFile,
		"--kubeconfig", kubeconfig,
		"--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--clone-grant-keys", keys,
		"--audit-policy-file", filepath.Join(c.cfg.ArtifactsDir, "deploy", "audit-policy.yaml"),
		"--audit-log-path", c.AuditLog,
		"--audit-log-mode", "blocking",
	}
	return c.startDataVolume()
}

func (c *Cluster) startDataVolume() error {
	proc, err := startProcess(c.cfg.Log, c.logDir, apiserverName, c.cfg.APIServerBinary, c.dvArgs...)
	if err != nil {
		return err
	}
	c.dvProc = proc
	c.procs = append(c.procs, proc)
	return nil
}

// RestartAPIServer stops datavolume-apiserver and starts it again with the
// same etcd: what is stored must survive.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	if err := c.dvProc.stop(10 * time.Second); err != nil {
		return err
	}
	if err := c.startDataVolume(); err != nil {
		return err
	}
	client, err := c.adminHTTPClient()
	if err != nil {
		return err
	}
	return waitFor(ctx, "datavolume-apiserver after restart", 60*time.Second, []*process{c.dvProc},
		httpOK(client, c.APIServerURL+"/apis/cdi.kubevirt.io/v1beta1/datavolumes"))
}

// Stop stops every process the cluster started, newest first, and releases
// the machine. The directory stays for inspection.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		if err := c.procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	c.procs = nil
	if c.lock != nil {
		_ = syscall.Flock(int(c.lock.Fd()), syscall.LOCK_UN)
		c.lock.Close()
		c.lock = nil
	}
	return errors.Join(errs...)
}

// LogDir is where each component's log is.
func (c *Cluster) LogDir() string { return c.logDir }

// Client returns a clientset for the cluster admin.
func (c *Cluster) Client() (*kubernetes.Clientset, error) {
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
	kp := KeyPair{CertFile: filepath.Join(c.pkiDir, "admin.crt"), KeyFile: filepath.Join(c.pkiDir, "admin.key")}
	return c.httpClient(kp)
}

func (c *Cluster) httpClient(client KeyPair) (*http.Client, error) {
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
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d, directory %s", os.Getpid(), c.cfg.Dir)
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

// freePorts finds n free TCP ports on loopback.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
