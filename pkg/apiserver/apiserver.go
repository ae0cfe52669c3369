// Package apiserver wires the DataVolume API into a k8s.io/apiserver generic
// server: configuration, completion and the installed API group.
package apiserver

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1alpha1"
	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
	dvregistry "github.com/datavolume/datavolume/pkg/registry/datavolume"
)

// ExtraConfig is what the DataVolume server needs beyond a generic server.
type ExtraConfig struct {
	// OnCreate runs on every DataVolume create (clone authorization).
	OnCreate dvregistry.CreateHook
	// Sources describes clone sources for datavolumes/source.
	Sources dvregistry.SourceDescriber
}

// Config is the configuration of the DataVolume server.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig is a Config with defaults filled in; only Complete makes
// one, so no server is built from an incomplete configuration.
type CompletedConfig struct {
	*completedConfig
}

// Complete fills in the defaults of the configuration.
func (cfg *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{
		GenericConfig: cfg.GenericConfig.Complete(),
		ExtraConfig:   &cfg.ExtraConfig,
	}}
}

// Server is the DataVolume API server.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// New builds the server and installs cdi.kubevirt.io v1beta1 and v1alpha1.
func (c completedConfig) New() (*Server, error) {
	generic, err := c.GenericConfig.New("datavolume-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("building generic server: %w", err)
	}

	storage, err := dvregistry.NewStorage(Scheme, c.GenericConfig.RESTOptionsGetter, c.ExtraConfig.OnCreate, c.ExtraConfig.Sources)
	if err != nil {
		return nil, err
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(cdi.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	group.NegotiatedSerializer = withoutProtobuf{Codecs}
	// Both versions serve the same storage; objects convert through the
	// internal type and are stored as v1beta1.
	for _, version := range []string{v1beta1.SchemeGroupVersion.Version, v1alpha1.SchemeGroupVersion.Version} {
		group.VersionedResourcesStorageMap[version] = map[string]rest.Storage{
			"datavolumes":        storage.DataVolume,
			"datavolumes/status": storage.Status,
			"datavolumes/source": storage.Source,
		}
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("installing %s: %w", cdi.GroupName, err)
	}
	return &Server{GenericAPIServer: generic}, nil
}
