package config

import (
	"fmt"
	"strings"
	"sync"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
)

// relabelConfigs translates user relabelings into validated Prometheus
// relabel configs. Unset fields keep Prometheus' defaults (action replace,
// separator ";", regex "(.*)", replacement "$1"), exactly as if the operator's
// YAML had been loaded. The action is case-insensitive, like in the CRD.
func relabelConfigs(rcs []monitoringv1.RelabelConfig) ([]*relabel.Config, error) {
	if len(rcs) == 0 {
		return nil, nil
	}
	out := make([]*relabel.Config, 0, len(rcs))
	for i, rc := range rcs {
		c, err := relabelConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("relabeling %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func relabelConfig(rc monitoringv1.RelabelConfig) (*relabel.Config, error) {
	c := relabel.DefaultRelabelConfig
	if rc.Action != "" {
		act := relabel.Action(strings.ToLower(rc.Action))
		switch act {
		case relabel.Replace, relabel.Keep, relabel.Drop, relabel.HashMod, relabel.LabelMap,
			relabel.LabelDrop, relabel.LabelKeep, relabel.Lowercase, relabel.Uppercase,
			relabel.KeepEqual, relabel.DropEqual:
			c.Action = act
		default:
			return nil, fmt.Errorf("unknown relabel action %q", rc.Action)
		}
	}
	if len(rc.SourceLabels) > 0 {
		c.SourceLabels = make(model.LabelNames, len(rc.SourceLabels))
		for i, l := range rc.SourceLabels {
			c.SourceLabels[i] = model.LabelName(l)
		}
	}
	if rc.Separator != nil {
		c.Separator = *rc.Separator
	}
	if rc.Regex != "" {
		re, err := compileRegexp(rc.Regex)
		if err != nil {
			return nil, fmt.Errorf("invalid regex %q: %w", rc.Regex, err)
		}
		c.Regex = re
	}
	if rc.Modulus < 0 {
		return nil, fmt.Errorf("negative modulus %d", rc.Modulus)
	}
	c.Modulus = uint64(rc.Modulus)
	c.TargetLabel = rc.TargetLabel
	if rc.Replacement != nil {
		c.Replacement = *rc.Replacement
	}
	if err := c.Validate(model.UTF8Validation); err != nil {
		return nil, err
	}
	// Validate recorded UTF-8; clear it so that the scrape config's own
	// scheme applies when Generate validates the job, as in config.Load.
	c.NameValidationScheme = model.UnsetValidation
	return &c, nil
}

// generatedRelabel builds a relabel rule from values computed from object
// data (label names, regex built from selector values). It validates the
// result, so an odd selector value becomes an error instead of a panic.
func generatedRelabel(action relabel.Action, source []string, regex, target, replacement string) (*relabel.Config, error) {
	c := relabel.DefaultRelabelConfig
	if action != "" {
		c.Action = action
	}
	if len(source) > 0 {
		c.SourceLabels = make(model.LabelNames, len(source))
		for i, s := range source {
			c.SourceLabels[i] = model.LabelName(s)
		}
	}
	if regex != "" {
		re, err := compileRegexp(regex)
		if err != nil {
			return nil, fmt.Errorf("invalid regex %q: %w", regex, err)
		}
		c.Regex = re
	}
	c.TargetLabel = target
	if replacement != "" {
		c.Replacement = replacement
	}
	if err := c.Validate(model.UTF8Validation); err != nil {
		return nil, err
	}
	// Validate recorded UTF-8; clear it so that the scrape config's own
	// scheme applies when Generate validates the job, as in config.Load.
	c.NameValidationScheme = model.UnsetValidation
	return &c, nil
}

// parseDuration parses a CRD duration. The empty string gives zero, which
// callers treat as "unset".
func parseDuration(d monitoringv1.Duration) (model.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := model.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", d, err)
	}
	return v, nil
}

// regexpCacheSize bounds the compiled-regex cache; when full it is emptied,
// so a long-running agent with changing selectors cannot grow it forever.
const regexpCacheSize = 4096

// regexpCache holds compiled relabel regexes. Generated rules repeat the
// same few expressions (port names, selector values) across thousands of
// jobs; compiling each once makes Generate several times faster. Compiled
// regexes are immutable and safe to share between configurations.
var regexpCache = struct {
	sync.Mutex
	m map[string]relabel.Regexp
}{m: map[string]relabel.Regexp{}}

// compileRegexp is relabel.NewRegexp with a cache.
func compileRegexp(s string) (relabel.Regexp, error) {
	regexpCache.Lock()
	re, ok := regexpCache.m[s]
	regexpCache.Unlock()
	if ok {
		return re, nil
	}
	re, err := relabel.NewRegexp(s)
	if err != nil {
		return re, err
	}
	regexpCache.Lock()
	if len(regexpCache.m) >= regexpCacheSize {
		regexpCache.m = make(map[string]relabel.Regexp, regexpCacheSize)
	}
	regexpCache.m[s] = re
	regexpCache.Unlock()
	return re, nil
}
