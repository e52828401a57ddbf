package config

import (
	"fmt"
	"log/slog"
	"sync"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v2"
)

// secretMu serialises use of commoncfg.MarshalSecretValue, a process-wide
// switch deciding whether Secret values marshal as "<secret>".
var secretMu sync.Mutex

// Marshal renders cfg as Prometheus YAML. Secrets are printed as "<secret>"
// unless showSecrets is true. The output loads with promconfig.Load (see
// Check).
func Marshal(cfg *promconfig.Config, showSecrets bool) ([]byte, error) {
	return marshalYAML(cfg, showSecrets)
}

func marshalYAML(v any, showSecrets bool) ([]byte, error) {
	secretMu.Lock()
	defer secretMu.Unlock()
	prev := commoncfg.MarshalSecretValue
	commoncfg.MarshalSecretValue = showSecrets
	defer func() { commoncfg.MarshalSecretValue = prev }()
	out, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return out, nil
}

// Check verifies that cfg survives Prometheus' own loader: it is rendered
// with secrets and parsed again with promconfig.Load. It returns the loaded
// configuration.
func Check(cfg *promconfig.Config) (*promconfig.Config, error) {
	out, err := Marshal(cfg, true)
	if err != nil {
		return nil, err
	}
	return LoadYAML(out)
}

// LoadYAML parses rendered configuration with promconfig.Load.
func LoadYAML(b []byte) (*promconfig.Config, error) {
	loaded, err := promconfig.Load(string(b), nopLogger())
	if err != nil {
		return nil, fmt.Errorf("prometheus rejects the configuration: %w", err)
	}
	return loaded, nil
}

func nopLogger() *slog.Logger { return promslog.NewNopLogger() }

// roundTrip marshals in (with secrets) and unmarshals it into out, which
// runs the UnmarshalYAML validation of Prometheus' types.
func roundTrip(in, out any) error {
	b, err := marshalYAML(in, true)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		return err
	}
	return nil
}
