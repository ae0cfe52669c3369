// Package app is the datavolume-controller command: options, clients,
// leader election and the health and metrics server around
// pkg/controller.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/clientgo/leaderelection" // leader election metrics
	_ "k8s.io/component-base/metrics/prometheus/restclient"              // client metrics
	_ "k8s.io/component-base/metrics/prometheus/workqueue"               // workqueue metrics
	"k8s.io/klog/v2"

	"github.com/datavolume/datavolume/pkg/apis/cdi/install"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/controller"
	cdiclient "github.com/datavolume/datavolume/pkg/generated/clientset/versioned"
	cdiinformers "github.com/datavolume/datavolume/pkg/generated/informers/externalversions"
	"github.com/datavolume/datavolume/pkg/kubevirt"
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/version"
	"github.com/datavolume/datavolume/pkg/vmtemplates"
)

// Options are the command-line options of datavolume-controller.
type Options struct {
	Kubeconfig                string
	ClonerImage               string
	ClonerPullPolicy          string
	ClonerMetricsPort         int32
	JobBackoffLimit           int32
	InsecureRegistries        []string
	FilesystemOverhead        float64
	HonorWaitForFirstConsumer bool
	VMTemplates               bool
	TestCrashPoints           bool
	CloneGrantPublicKeys      string
	Workers                   int
	ProgressEvery             time.Duration
	ServeAddress              string
	KubeAPIQPS                float32
	KubeAPIBurst              int
	LeaderElect               bool
	LeaderElectionNamespace   string
	LeaderElectionID          string
	LeaseDuration             time.Duration
	RenewDeadline             time.Duration
	RetryPeriod               time.Duration
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "datavolume-system"
	}
	return &Options{
		ClonerPullPolicy:        string(corev1.PullIfNotPresent),
		ClonerMetricsPort:       8090,
		JobBackoffLimit:         3,
		FilesystemOverhead:      float64(plan.DefaultFilesystemOverhead),
		Workers:                 4,
		ProgressEvery:           3 * time.Second,
		ServeAddress:            ":8080",
		KubeAPIQPS:              50,
		KubeAPIBurst:            100,
		LeaderElect:             true,
		LeaderElectionNamespace: ns,
		LeaderElectionID:        "datavolume-controller",
		LeaseDuration:           15 * time.Second,
		RenewDeadline:           10 * time.Second,
		RetryPeriod:             2 * time.Second,
	}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the cluster; empty in a Pod.")
	fs.StringVar(&o.ClonerImage, "cloner-image", o.ClonerImage, "Image of datavolume-cloner, run by the Jobs that move data (required).")
	fs.StringVar(&o.ClonerPullPolicy, "cloner-pull-policy", o.ClonerPullPolicy, "Pull policy of the cloner image: Always, IfNotPresent or Never.")
	fs.Int32Var(&o.ClonerMetricsPort, "cloner-metrics-port", o.ClonerMetricsPort, "Port on which a cloner pod serves its progress; the controller reads it there.")
	fs.Int32Var(&o.JobBackoffLimit, "job-backoff-limit", o.JobBackoffLimit, "Failed pods a Job replaces before the DataVolume is Failed (failures that cannot heal fail at once).")
	fs.StringSliceVar(&o.InsecureRegistries, "insecure-registry", o.InsecureRegistries, "Registry host:port reached over plain HTTP or unverified TLS (repeatable).")
	fs.Float64Var(&o.FilesystemOverhead, "filesystem-overhead", o.FilesystemOverhead, "Share of a Filesystem volume the filesystem takes: disk images get the rest, and spec.storage claims grow by it.")
	fs.BoolVar(&o.HonorWaitForFirstConsumer, "honor-wait-for-first-consumer", o.HonorWaitForFirstConsumer,
		"Leave claims of WaitForFirstConsumer classes unbound (phase WaitForFirstConsumer) until a pod uses them, unless the DataVolume is annotated cdi.kubevirt.io/storage.bind.immediate.requested=true.")
	fs.BoolVar(&o.VMTemplates, "vm-templates", o.VMTemplates,
		"Create the DataVolumes of VirtualMachines' dataVolumeTemplates, as KubeVirt's virt-controller does: for clusters without KubeVirt. "+
			"datavolume-apiserver must name this controller's ServiceAccount in --vm-template-creator, so that each clone is judged for the VM's ServiceAccount.")
	fs.StringVar(&o.CloneGrantPublicKeys, "clone-grant-public-keys", o.CloneGrantPublicKeys,
		"Directory of the Ed25519 public keys (PEM, file name = key id; a mounted ConfigMap) that verify the grants of cross-namespace clones; reloaded when it changes. "+
			"Empty: cross-namespace clones wait.")
	fs.BoolVar(&o.TestCrashPoints, "test-crash-points", false, "Tests only: end the process after the hand-over step a DataVolume's annotation "+controller.AnnTestCrashAfter+" names.")
	_ = fs.MarkHidden("test-crash-points")
	fs.IntVar(&o.Workers, "workers", o.Workers, "DataVolumes synced at once.")
	fs.DurationVar(&o.ProgressEvery, "progress-interval", o.ProgressEvery, "How often a running transfer's progress is read and written to status.progress.")
	fs.StringVar(&o.ServeAddress, "serve-address", o.ServeAddress, "Address of /metrics, /healthz and /readyz.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Requests per second to the API servers.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of requests to the API servers.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Run only while holding the Lease, so replicas take over from each other.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the Lease (default: $POD_NAMESPACE, else datavolume-system).")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the Lease.")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration, "How long a standby waits after the last renewal before taking over.")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline, "How long the leader keeps trying to renew before it gives up.")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "How often to try to acquire or renew the Lease.")
}

// Validate reports every problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.ClonerImage == "" {
		errs = append(errs, errors.New("--cloner-image is required"))
	}
	switch corev1.PullPolicy(o.ClonerPullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--cloner-pull-policy %q: want Always, IfNotPresent or Never", o.ClonerPullPolicy))
	}
	if o.ClonerMetricsPort <= 0 || o.ClonerMetricsPort > 65535 {
		errs = append(errs, fmt.Errorf("--cloner-metrics-port %d is not a port", o.ClonerMetricsPort))
	}
	if o.JobBackoffLimit < 0 {
		errs = append(errs, errors.New("--job-backoff-limit must not be negative"))
	}
	if err := plan.FilesystemOverhead(o.FilesystemOverhead).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--filesystem-overhead: %w", err))
	}
	if o.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if o.ProgressEvery <= 0 {
		errs = append(errs, errors.New("--progress-interval must be positive"))
	}
	if o.LeaderElect && !(o.LeaseDuration > o.RenewDeadline && o.RenewDeadline > o.RetryPeriod && o.RetryPeriod > 0) {
		errs = append(errs, errors.New("leader election needs lease duration > renew deadline > retry period > 0"))
	}
	return utilerrors.NewAggregate(errs)
}

// jobOptions are the settings of the Jobs the controller runs.
func (o *Options) jobOptions() controller.JobOptions {
	return controller.JobOptions{
		Image:              o.ClonerImage,
		PullPolicy:         corev1.PullPolicy(o.ClonerPullPolicy),
		MetricsPort:        o.ClonerMetricsPort,
		BackoffLimit:       o.JobBackoffLimit,
		InsecureRegistries: o.InsecureRegistries,
		FilesystemOverhead: plan.FilesystemOverhead(o.FilesystemOverhead),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
	}
}

func (o *Options) restConfig() (*rest.Config, error) {
	var (
		config *rest.Config
		err    error
	)
	if o.Kubeconfig == "" {
		config, err = rest.InClusterConfig()
	} else {
		config, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the client configuration: %w", err)
	}
	config.QPS, config.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	config.UserAgent = "datavolume-controller"
	return config, nil
}

// Run runs the controller until ctx is done or leadership is lost.
func (o *Options) Run(ctx context.Context) error {
	log := klog.FromContext(ctx).WithName("datavolume-controller")
	ctx = logr.NewContext(ctx, log)
	config, err := o.restConfig()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	cdi, err := cdiclient.NewForConfig(config)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	install.Install(scheme)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "datavolume-controller"})

	health := newHealthState()
	var elector *leaderelection.LeaderElector
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- serve(ctx, o.ServeAddress, health, func() *leaderelection.LeaderElector { return elector })
	}()

	run := func(ctx context.Context) {
		if err := o.runController(ctx, config, kube, cdi, scheme, recorder, health); err != nil {
			log.Error(err, "Controller stopped")
		}
	}
	if !o.LeaderElect {
		health.setReady()
		run(ctx)
		return nil
	}
	identity, err := os.Hostname()
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaderElectionNamespace, Name: o.LeaderElectionID},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity, EventRecorder: recorder},
	}
	lost := make(chan struct{})
	elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            o.LeaderElectionID,
		WatchDog:        leaderelection.NewLeaderHealthzAdaptor(20 * time.Second),
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("Leading", "identity", identity)
				run(ctx)
			},
			OnStoppedLeading: func() { close(lost) },
			OnNewLeader: func(leader string) {
				if leader != identity {
					log.Info("Standing by", "leader", leader)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("setting up leader election: %w", err)
	}
	// A standby is ready: it takes over within a lease duration.
	health.setReady()
	go elector.Run(ctx)
	select {
	case <-ctx.Done():
		<-lost
		return nil
	case <-lost:
		return errors.New("lost the leader lease")
	case err := <-serveErr:
		return err
	}
}

func (o *Options) runController(ctx context.Context, config *rest.Config, kube kubernetes.Interface, cdi cdiclient.Interface, scheme *runtime.Scheme,
	recorder record.EventRecorder, health *healthState) error {
	kubeFactory := kubeinformers.NewSharedInformerFactory(kube, 0)
	// Only our Jobs; pods trimmed of what the controller never reads.
	jobFactory := kubeinformers.NewSharedInformerFactoryWithOptions(kube, 0, kubeinformers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.LabelSelector = controller.LabelManagedBy + "=" + controller.ManagedBy
	}))
	podInformer := kubeFactory.Core().V1().Pods()
	if err := podInformer.Informer().SetTransform(trimPod); err != nil {
		return err
	}
	cdiFactory := cdiinformers.NewSharedInformerFactory(cdi, 0)
	dyn, err := dynamic.NewForConfig(config)
	if err != nil {
		return err
	}
	var grants controller.GrantVerifier
	if o.CloneGrantPublicKeys != "" {
		keys, err := cloneauth.WatchPublicKeySet(ctx, o.CloneGrantPublicKeys, cloneauth.DefaultReloadEvery,
			logr.FromContextOrDiscard(ctx).WithName("grant-keys"))
		if err != nil {
			return fmt.Errorf("loading clone grant public keys: %w", err)
		}
		grants = keys
	}
	c, err := controller.New(kube, cdi, scheme, recorder, controller.Informers{
		DataVolumes:    cdiFactory.Cdi().V1beta1().DataVolumes(),
		Claims:         kubeFactory.Core().V1().PersistentVolumeClaims(),
		Jobs:           jobFactory.Batch().V1().Jobs(),
		Pods:           podInformer,
		StorageClasses: kubeFactory.Storage().V1().StorageClasses(),
	}, controller.Options{
		Jobs:                      o.jobOptions(),
		HonorWaitForFirstConsumer: o.HonorWaitForFirstConsumer,
		ProgressEvery:             o.ProgressEvery,
		CrashAfter:                o.crashAfter(),
		Grants:                    grants,
		VirtualMachines:           kubevirt.Reader{Client: dyn},
		// Uncached: a revoked permission stops a clone that has not started.
		CloneAuthorizer: cloneauth.NewAuthorizer(kube.AuthorizationV1().SubjectAccessReviews(),
			cloneauth.WithLogger(logr.FromContextOrDiscard(ctx).WithName("clone-check"))),
	})
	if err != nil {
		return err
	}
	for _, collector := range c.Collectors() {
		legacyregistry.RawMustRegister(collector)
	}
	var templates *vmtemplates.Controller
	if o.VMTemplates {
		vmFactory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
		templates, err = vmtemplates.New(cdi, recorder, vmFactory.ForResource(kubevirt.VirtualMachines), cdiFactory.Cdi().V1beta1().DataVolumes())
		if err != nil {
			return err
		}
		vmFactory.Start(ctx.Done())
		defer vmFactory.Shutdown()
	}
	kubeFactory.Start(ctx.Done())
	jobFactory.Start(ctx.Done())
	cdiFactory.Start(ctx.Done())
	defer kubeFactory.Shutdown()
	defer jobFactory.Shutdown()
	defer cdiFactory.Shutdown()
	health.setLeading()
	if templates != nil {
		go func() {
			if err := templates.Run(ctx, 2); err != nil {
				logr.FromContextOrDiscard(ctx).Error(err, "VirtualMachine templates stopped")
			}
		}()
	}
	return c.Run(ctx, o.Workers)
}

// trimPod keeps what the controller reads of a pod: metadata without
// managed fields, volumes, containers' names, and status.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	pod.ManagedFields = nil
	pod.Annotations = nil
	spec := corev1.PodSpec{Volumes: pod.Spec.Volumes, NodeName: pod.Spec.NodeName}
	// Mounts say whether a pod writes to a clone's source.
	trim := func(cs []corev1.Container) []corev1.Container {
		var out []corev1.Container
		for _, c := range cs {
			out = append(out, corev1.Container{Name: c.Name, Image: c.Image, VolumeMounts: c.VolumeMounts, VolumeDevices: c.VolumeDevices})
		}
		return out
	}
	spec.Containers = trim(pod.Spec.Containers)
	spec.InitContainers = trim(pod.Spec.InitContainers)
	for _, c := range pod.Spec.EphemeralContainers {
		spec.EphemeralContainers = append(spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: c.Name, VolumeMounts: c.VolumeMounts, VolumeDevices: c.VolumeDevices}})
	}
	pod.Spec = spec
	return pod, nil
}

var _ cache.TransformFunc = trimPod

// NewCommand returns the datavolume-controller command.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "datavolume-controller",
		Short: "Turns DataVolumes into claims and the Jobs that fill them",
		Long: `datavolume-controller watches DataVolumes (cdi.kubevirt.io), creates each one's
PersistentVolumeClaim, runs datavolume-cloner in a Job to import, clone or
create its data, and reports phases, progress, conditions and Events as CDI
does. Replicas elect a leader through a Lease.`,
		SilenceUsage: true,
		Version:      version.Get().String(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	return cmd
}

// healthState is what /readyz reports: closed channels say the process is
// ready (a standby is: it takes over within a lease duration) and leading.
type healthState struct {
	ready   chan struct{}
	leading chan struct{}
}

func newHealthState() *healthState {
	return &healthState{ready: make(chan struct{}), leading: make(chan struct{})}
}

func (h *healthState) setReady()   { closeOnce(h.ready) }
func (h *healthState) setLeading() { closeOnce(h.leading) }

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// serve answers /metrics, /healthz (the leader's lease renewals) and
// /readyz until ctx is done.
func serve(ctx context.Context, address string, health *healthState, elector func() *leaderelection.LeaderElector) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", legacyregistry.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if e := elector(); e != nil {
			if err := e.Check(20 * time.Second); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !isClosed(health.ready) {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		state := "standby"
		if isClosed(health.leading) {
			state = "leading"
		}
		fmt.Fprintln(w, "ok:", state)
	})
	l, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", address, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// crashAfter is the test-only crash hook: the process ends as if killed.
func (o *Options) crashAfter() func(*v1beta1.DataVolume, string) {
	if !o.TestCrashPoints {
		return nil
	}
	return func(dv *v1beta1.DataVolume, step string) {
		klog.Infof("Test crash point: exiting after step %q of DataVolume %s/%s", step, dv.Namespace, dv.Name)
		klog.Flush()
		os.Exit(3)
	}
}
