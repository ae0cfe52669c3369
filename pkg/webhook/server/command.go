package server

import (
	"flag"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/datavolume/datavolume/pkg/version"
)

// NewCommand is the datavolume-webhook command.
func NewCommand() *cobra.Command {
	options := NewOptions()
	logConfig := textlogger.NewConfig()
	cmd := &cobra.Command{
		Use:   "datavolume-webhook",
		Short: "Admission webhook for DataVolumes and KubeVirt VirtualMachine dataVolumeTemplates",
		Long: "Serves /mutate-datavolumes, /validate-datavolumes and /validate-virtualmachines over HTTPS:\n" +
			"a clone must be at least its source's size (with filesystem overhead from Block to Filesystem),\n" +
			"archives keep their volume mode, and a VirtualMachine's service account must be allowed to clone\n" +
			"from other namespaces.",
		SilenceUsage: true,
		Version:      version.Get().String(),
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := textlogger.NewLogger(logConfig)
			// Libraries that log through klog (client-go, certificate reload) log the same way.
			klog.SetLogger(log)
			config, err := options.Config()
			if err != nil {
				return err
			}
			return config.Run(logr.NewContext(cmd.Context(), log))
		},
	}
	options.AddFlags(cmd.Flags())
	logFlags := flag.NewFlagSet("logging", flag.ContinueOnError)
	logConfig.AddFlags(logFlags)
	cmd.Flags().AddGoFlagSet(logFlags)
	return cmd
}
