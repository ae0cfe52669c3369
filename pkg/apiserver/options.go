package apiserver

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/term"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	generatedopenapi "github.com/datavolume/datavolume/pkg/generated/openapi"
	"github.com/datavolume/datavolume/pkg/version"
)

// etcdPathPrefix is where DataVolumes live in the server's own etcd.
const etcdPathPrefix = "/registry/cdi.kubevirt.io"

// Options are the command-line options of datavolume-apiserver.
type Options struct {
	Recommended *genericoptions.RecommendedOptions

	// CloneGrantKeys is a directory (a mounted Secret) of Ed25519 keys that sign
	// clone grants; see package cloneauth.
	CloneGrantKeys string
	// CloneGrantTTL is how long a clone grant stays valid.
	CloneGrantTTL time.Duration
	// CloneCheckTimeout bounds each SubjectAccessReview of a clone check.
	CloneCheckTimeout time.Duration
	// CloneCheckQPS and CloneCheckBurst limit the client of the clone
	// checks (their SubjectAccessReviews, and the reads datavolumes/source
	// makes); see DefaultCloneCheckQPS.
	CloneCheckQPS   float32
	CloneCheckBurst int
	// CloneCheckCacheAllowedTTL and CloneCheckCacheDeniedTTL are how long
	// an allowed and a denied SubjectAccessReview answer is reused.
	CloneCheckCacheAllowedTTL, CloneCheckCacheDeniedTTL time.Duration
	// CloneCheckMaxInFlightPerUser bounds the clone checks in flight per
	// requester; see cloneauth.DefaultMaxInFlightPerRequester.
	CloneCheckMaxInFlightPerUser int
	// VMTemplateCreator is the user (datavolume-controller's
	// ServiceAccount) whose clone DataVolumes controlled by a
	// VirtualMachine are judged for the VM's ServiceAccount.
	VMTemplateCreator string
	// AlternateDNS are extra names for a self-signed serving certificate.
	AlternateDNS []string
}

// NewOptions returns the default options.
func NewOptions() *Options {
	o := &Options{
		Recommended:       genericoptions.NewRecommendedOptions(etcdPathPrefix, Codecs.LegacyCodec(v1beta1.SchemeGroupVersion)),
		CloneGrantTTL:     24 * time.Hour,
		CloneCheckTimeout: 10 * time.Second,
		CloneCheckQPS:     DefaultCloneCheckQPS,
		CloneCheckBurst:   DefaultCloneCheckBurst,

		CloneCheckCacheAllowedTTL:    cloneauth.DefaultCacheAllowedTTL,
		CloneCheckCacheDeniedTTL:     cloneauth.DefaultCacheDeniedTTL,
		CloneCheckMaxInFlightPerUser: cloneauth.DefaultMaxInFlightPerRequester,
	}
	// kube-apiserver has already queued every request it proxies here under
	// its own priority and fairness; a second queue only costs CPU (0.1 of
	// 2.2 ms per create, measured). --enable-priority-and-fairness turns it on.
	o.Recommended.Features.EnablePriorityAndFairness = false
	// Everything is stored as v1beta1, whichever version it was written in.
	o.Recommended.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(v1beta1.SchemeGroupVersion,
		schema.GroupKind{Group: v1beta1.GroupName})
	return o
}

// Flags returns the options as named flag sets, printed in sections by --help.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	o.Recommended.Etcd.AddFlags(fss.FlagSet("etcd"))
	o.Recommended.SecureServing.AddFlags(fss.FlagSet("secure serving"))
	o.Recommended.Authentication.AddFlags(fss.FlagSet("authentication"))
	o.Recommended.Authorization.AddFlags(fss.FlagSet("authorization"))
	o.Recommended.Audit.AddFlags(fss.FlagSet("auditing"))
	o.Recommended.Features.AddFlags(fss.FlagSet("features"))
	o.Recommended.CoreAPI.AddFlags(fss.FlagSet("core API"))
	o.Recommended.Admission.AddFlags(fss.FlagSet("admission"))
	o.Recommended.EgressSelector.AddFlags(fss.FlagSet("egress selector"))
	o.Recommended.Traces.AddFlags(fss.FlagSet("traces"))

	clone := fss.FlagSet("clone authorization")
	clone.StringVar(&o.CloneGrantKeys, "clone-grant-keys", o.CloneGrantKeys,
		"Directory of Ed25519 private keys (PEM, one file per key, file name = key id, optional file 'active' naming the signing key) that sign cross-namespace clone grants; reloaded when it changes.")
	clone.DurationVar(&o.CloneGrantTTL, "clone-grant-ttl", o.CloneGrantTTL, "How long a clone grant stays valid.")
	clone.DurationVar(&o.CloneCheckTimeout, "clone-check-timeout", o.CloneCheckTimeout,
		"Time limit of each SubjectAccessReview of a clone check; a check that times out denies the clone.")
	clone.Float32Var(&o.CloneCheckQPS, "clone-check-qps", o.CloneCheckQPS,
		"Requests per second the clone checks may send kube-apiserver (SubjectAccessReviews, and the claim and pod reads of datavolumes/source), on a client of their own. "+
			"Each cross-namespace clone create asks one review, a denied one two; above the limit creates wait, and a wait longer than --clone-check-timeout denies.")
	clone.StringVar(&o.VMTemplateCreator, "vm-template-creator", o.VMTemplateCreator,
		"User that creates the DataVolumes of VirtualMachines' dataVolumeTemplates where KubeVirt is absent (datavolume-controller's ServiceAccount): "+
			"its clone DataVolumes controlled by a VirtualMachine are judged for the VM's ServiceAccount, as KubeVirt judges them. Empty: none.")
	clone.IntVar(&o.CloneCheckBurst, "clone-check-burst", o.CloneCheckBurst,
		"Requests the clone checks may send at once above --clone-check-qps.")
	clone.DurationVar(&o.CloneCheckCacheAllowedTTL, "clone-check-cache-allowed-ttl", o.CloneCheckCacheAllowedTTL,
		"How long an allowed clone check's SubjectAccessReview answer is reused for the same requester, source and target namespace (0: never). "+
			"It admits the create only: datavolume-controller asks again, uncached, before any data moves.")
	clone.DurationVar(&o.CloneCheckCacheDeniedTTL, "clone-check-cache-denied-ttl", o.CloneCheckCacheDeniedTTL,
		"How long a denied clone check's answer is reused (0: never); a RoleBinding just added takes effect after it.")
	clone.IntVar(&o.CloneCheckMaxInFlightPerUser, "clone-check-max-in-flight-per-user", o.CloneCheckMaxInFlightPerUser,
		fmt.Sprintf("Clone checks one requester (the user, or a VM template's ServiceAccount) may have in flight at once; one more waits up to %s for a slot, "+
			"then the create is refused with 429 Too Many Requests and Retry-After, so that one user's flood of clones cannot hold up everyone else's checks.",
			cloneauth.DefaultInFlightWait))

	misc := fss.FlagSet("misc")
	misc.StringSliceVar(&o.AlternateDNS, "alternate-dns", o.AlternateDNS, "Extra DNS names of a self-signed serving certificate.")
	globalflag.AddGlobalFlags(fss.FlagSet("global"), "datavolume-apiserver")
	return fss
}

// Complete fills in what the flags leave out.
func (o *Options) Complete() error {
	return nil
}

// Validate checks the options, reporting every problem at once.
func (o *Options) Validate() error {
	errs := o.Recommended.Validate()
	if o.CloneGrantKeys == "" {
		errs = append(errs, fmt.Errorf("--clone-grant-keys is required: cross-namespace clones are stamped with grants signed by these keys"))
	}
	if o.CloneGrantTTL <= 0 {
		errs = append(errs, fmt.Errorf("--clone-grant-ttl must be positive"))
	}
	if o.CloneCheckTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-timeout must be positive"))
	}
	if o.CloneCheckQPS <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-qps must be positive, not %v: the clone checks' client is always limited", o.CloneCheckQPS))
	}
	if o.CloneCheckBurst <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-burst must be positive, not %d", o.CloneCheckBurst))
	}
	if o.CloneCheckMaxInFlightPerUser <= 0 {
		errs = append(errs, fmt.Errorf("--clone-check-max-in-flight-per-user must be positive, not %d: one user's clones must not hold up everyone's checks", o.CloneCheckMaxInFlightPerUser))
	}
	return utilerrors.NewAggregate(errs)
}

// Config turns the options into a server configuration.
func (o *Options) Config(ctx context.Context, log logr.Logger) (*Config, error) {
	if err := o.Recommended.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", o.AlternateDNS,
		[]net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("creating self-signed certificates: %w", err)
	}

	generic := genericapiserver.NewRecommendedConfig(Codecs)
	generic.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()
	generic.FeatureGate = utilfeature.DefaultFeatureGate
	namer := openapi.NewDefinitionNamer(Scheme)
	generic.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	generic.OpenAPIConfig.Info.Title = "DataVolume"
	generic.OpenAPIConfig.Info.Version = "v1beta1"
	generic.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	generic.OpenAPIV3Config.Info.Title = "DataVolume"
	generic.OpenAPIV3Config.Info.Version = "v1beta1"

	if err := o.Recommended.ApplyTo(generic); err != nil {
		return nil, fmt.Errorf("applying options: %w", err)
	}

	cloneChecks, err := kubernetes.NewForConfig(o.cloneCheckClientConfig(generic.ClientConfig))
	if err != nil {
		return nil, fmt.Errorf("building the client of the clone checks: %w", err)
	}
	vms, err := dynamic.NewForConfig(o.cloneCheckClientConfig(generic.ClientConfig))
	if err != nil {
		return nil, fmt.Errorf("building the client of the clone checks: %w", err)
	}
	// The source's UID for a grant, from a cache: no request per create.
	claims := generic.SharedInformerFactory.Core().V1().PersistentVolumeClaims().Lister()
	extra, err := o.cloneConfig(ctx, cloneChecks, vms, claims, log)
	if err != nil {
		return nil, err
	}
	return &Config{GenericConfig: generic, ExtraConfig: extra}, nil
}

// Run starts the server and serves until ctx is done.
func (o *Options) Run(ctx context.Context) error {
	log := klog.FromContext(ctx).WithName("datavolume-apiserver")
	config, err := o.Config(ctx, log)
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	server.GenericAPIServer.AddPostStartHookOrDie("start-core-informers", func(hook genericapiserver.PostStartHookContext) error {
		config.GenericConfig.SharedInformerFactory.Start(hook.Done())
		return nil
	})
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// NewCommand returns the datavolume-apiserver command.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "datavolume-apiserver",
		Short: "Serves the cdi.kubevirt.io DataVolume API as an aggregated API server",
		Long: `datavolume-apiserver serves DataVolumes (cdi.kubevirt.io v1beta1 and v1alpha1) behind
kube-apiserver's aggregation layer, stores them in its own etcd, and authorizes
cross-namespace clones with SubjectAccessReviews on datavolumes/source.`,
		SilenceUsage: true,
		Version:      version.Get().String(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.SetContext(ctx)
	fss := o.Flags()
	for _, fs := range fss.FlagSets {
		cmd.Flags().AddFlagSet(fs)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, fss, cols)
	return cmd
}
