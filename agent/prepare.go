package agent

import (
	"errors"
	"fmt"
	"log/slog"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/promshard/promshard/config"
)

// prepare turns a typed configuration built in memory into one the Prometheus
// managers accept. scrape.Manager only takes configurations that went through
// promconfig.Load (it checks a private "loaded" flag), so prepare starts from
// a loaded empty configuration, moves the typed sections into it and runs the
// same normalisation and per-section validation Load runs (which fills
// defaults such as a job's interval and timeout from the global section). No
// YAML is involved. Jobs that fail validation are returned as JobErrors.
//
// Validation fills a job's defaults in place. A job that is the very
// *ScrapeConfig of prev (the running configuration), under an equal global
// section, went through it already and is running: it is taken as it is,
// never written again (the translation hands unchanged objects' jobs
// again, see config.Cache).
func prepare(cfg *promconfig.Config, prev *promconfig.Config, logger *slog.Logger) (*promconfig.Config, error) {
	var running jobIndex
	if prev != nil {
		running = indexJobs(prev.ScrapeConfigs, nil)
	}
	return prepareInto(cfg, prev, running, jobIndex{}, logger)
}

// prepareInto is prepare with the index of prev's jobs (running) and an
// index it fills with the prepared configuration's jobs (into, cleared
// first), both reused across applies.
func prepareInto(cfg *promconfig.Config, prev *promconfig.Config, running, into jobIndex, logger *slog.Logger) (*promconfig.Config, error) {
	if cfg == nil {
		return nil, errors.New("agent: nil configuration")
	}
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	base, err := promconfig.Load("", logger)
	if err != nil {
		return nil, fmt.Errorf("agent: loading empty base configuration: %w", err)
	}
	gc, err := normalizeGlobal(cfg.GlobalConfig)
	if err != nil {
		return nil, err
	}
	base.GlobalConfig = gc
	if prev == nil || !sameContent(prev.GlobalConfig, gc) {
		running = nil // every job is validated under the new global section
	}

	clear(into)
	base.ScrapeConfigs = make([]*promconfig.ScrapeConfig, 0, len(cfg.ScrapeConfigs))
	invalid := JobErrors{}
	for _, sc := range cfg.ScrapeConfigs {
		if _, dup := into[sc.JobName]; dup {
			return nil, fmt.Errorf("agent: duplicate job name %q", sc.JobName)
		}
		into[sc.JobName] = sc
		if running[sc.JobName] == sc {
			base.ScrapeConfigs = append(base.ScrapeConfigs, sc)
			continue
		}
		if err := sc.Validate(base.GlobalConfig); err != nil {
			// config.Generate rejects invalid objects before this point;
			// reaching here is a translation bug. The job is refused like
			// one the scrape manager would refuse, so that its object is
			// rejected alone and visibly.
			invalid[sc.JobName] = err
			continue
		}
		base.ScrapeConfigs = append(base.ScrapeConfigs, sc)
	}
	if len(invalid) > 0 {
		return nil, invalid
	}

	names := map[string]struct{}{}
	for _, rw := range cfg.RemoteWriteConfigs {
		if rw == nil {
			return nil, errors.New("agent: empty remote write configuration")
		}
		if _, dup := names[rw.Name]; dup && rw.Name != "" {
			return nil, fmt.Errorf("agent: duplicate remote write name %q", rw.Name)
		}
		names[rw.Name] = struct{}{}
		if err := rw.Validate(base.GlobalConfig.MetricNameValidationScheme); err != nil {
			return nil, fmt.Errorf("agent: remote write %s: %s", redactedURL(rw.URL), config.RedactURLs(err.Error()))
		}
	}
	base.RemoteWriteConfigs = cfg.RemoteWriteConfigs
	return base, nil
}

func redactedURL(u *commoncfg.URL) string {
	if u == nil || u.URL == nil {
		return `""`
	}
	return u.Redacted()
}

// normalizeGlobal fills the zero fields of a typed global section with the
// defaults GlobalConfig.UnmarshalYAML would have set.
func normalizeGlobal(gc promconfig.GlobalConfig) (promconfig.GlobalConfig, error) {
	def := promconfig.DefaultGlobalConfig
	switch gc.MetricNameValidationScheme {
	case model.UTF8Validation, model.LegacyValidation:
	default:
		gc.MetricNameValidationScheme = def.MetricNameValidationScheme
	}
	if gc.MetricNameEscapingScheme == "" {
		gc.MetricNameEscapingScheme = def.MetricNameEscapingScheme
	}
	if gc.ScrapeInterval == 0 {
		gc.ScrapeInterval = def.ScrapeInterval
	}
	if gc.ScrapeTimeout > gc.ScrapeInterval {
		return gc, errors.New("agent: global scrape timeout greater than scrape interval")
	}
	if gc.ScrapeTimeout == 0 {
		gc.ScrapeTimeout = min(def.ScrapeTimeout, gc.ScrapeInterval)
	}
	if gc.EvaluationInterval == 0 {
		gc.EvaluationInterval = def.EvaluationInterval
	}
	if gc.ScrapeNativeHistograms == nil {
		gc.ScrapeNativeHistograms = def.ScrapeNativeHistograms
	}
	if gc.ExtraScrapeMetrics == nil {
		gc.ExtraScrapeMetrics = def.ExtraScrapeMetrics
	}
	return gc, nil
}

// jobIndex holds the jobs of one configuration by name.
type jobIndex map[string]*promconfig.ScrapeConfig

// indexJobs returns idx (a new index if nil), cleared, with jobs in it.
func indexJobs(jobs []*promconfig.ScrapeConfig, idx jobIndex) jobIndex {
	if idx == nil {
		idx = make(jobIndex, len(jobs))
	}
	clear(idx)
	for _, sc := range jobs {
		idx[sc.JobName] = sc
	}
	return idx
}
