package config

// The PrometheusAgent's additionalScrapeConfigs: a key of a Secret in the
// agent's namespace holding a YAML list of raw Prometheus scrape configs,
// appended after the generated jobs as prometheus-operator does
// (loadAdditionalScrapeConfigsSecret, then appended to scrape_configs).
//
// promshard loads them with Prometheus' own code (strict YAML into
// []*promconfig.ScrapeConfig, then ScrapeConfig.Validate with the global
// section, like config.Load), so a list Prometheus would refuse is refused
// here. The setting is one Result of kind AdditionalScrapeConfigs named
// after the Secret: a Secret or key that is missing (and not optional), a
// list that does not parse or validate, or a job name that another job
// already has rejects this setting alone (its jobs are left out, as for a
// rejected monitor), while the generated jobs keep running. The jobs are
// used as written: no namespace enforcement, scrape class, limits capping
// or file-access check, since only who may write the agent's own
// namespace can set them (prometheus-operator treats them the same way).
// They are sharded like every other job.

import (
	"fmt"
	"strings"

	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v2"
)

// additionalEntry is the cached outcome of the additional scrape configs:
// kept while the Secret key reads the same (the cache is dropped whenever
// the agent's spec changes, the selector included).
type additionalEntry struct {
	reads  []lookup
	jobs   []*promconfig.ScrapeConfig
	result Result
}

// additionalJobs returns the agent's additional scrape configs and their
// Result, or nil jobs and a nil Result when the agent sets none. generated
// are the generated jobs, whose names an additional job must not reuse.
func (g *generator) additionalJobs(c *Cache, generated []*promconfig.ScrapeConfig) ([]*promconfig.ScrapeConfig, *Result) {
	a := g.snap.Agent
	if a == nil || a.Spec.AdditionalScrapeConfigs == nil {
		return nil, nil
	}
	jobs, r := c.additional(g.res)
	if r == nil {
		var reads []lookup
		g.res.reads = &reads
		var err error
		jobs, err = g.loadAdditional()
		g.res.reads = nil
		res := Result{Kind: KindAdditionalScrapeConfigs, Namespace: a.Namespace, Name: a.Spec.AdditionalScrapeConfigs.Name,
			Generation: a.Generation, Accepted: err == nil}
		if err != nil {
			res.Reason = err.Error()
			jobs = nil
		} else {
			res.Jobs = jobNames(jobs)
		}
		c.putAdditional(reads, jobs, res)
		r = &res
	}
	if !r.Accepted || len(jobs) == 0 {
		return nil, r
	}
	// The generated jobs change independently of the Secret: check the
	// names on every call. Job names are unique within jobs already.
	names := make(map[string]bool, len(jobs))
	for _, sc := range jobs {
		names[sc.JobName] = true
	}
	for _, sc := range generated {
		if names[sc.JobName] {
			rejected := *r
			rejected.Accepted, rejected.Jobs = false, nil
			rejected.Reason = fmt.Sprintf("%s: job name %q is already used by a generated job", g.additionalSource(), sc.JobName)
			return nil, &rejected
		}
	}
	return jobs, r
}

// additionalSource names the Secret key, for reasons.
func (g *generator) additionalSource() string {
	sel := g.snap.Agent.Spec.AdditionalScrapeConfigs
	return fmt.Sprintf("additionalScrapeConfigs (secret %s/%s key %q)", g.snap.Agent.Namespace, sel.Name, sel.Key)
}

// loadAdditional reads, parses and validates the Secret key.
func (g *generator) loadAdditional() ([]*promconfig.ScrapeConfig, error) {
	src := g.additionalSource()
	data, err := g.res.secretKey(g.snap.Agent.Namespace, *g.snap.Agent.Spec.AdditionalScrapeConfigs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	jobs, err := parseScrapeConfigs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if err := g.finalize(jobs); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return jobs, nil
}

// parseScrapeConfigs parses a YAML list of Prometheus scrape configs the way
// config.Load parses scrape_configs: strictly (an unknown field is an
// error), each entry filled with Prometheus' defaults, job names unique.
// An empty document is an empty list, as for prometheus-operator.
func parseScrapeConfigs(data string) ([]*promconfig.ScrapeConfig, error) {
	if strings.TrimSpace(data) == "" {
		return nil, nil
	}
	var jobs []*promconfig.ScrapeConfig
	if err := yaml.UnmarshalStrict([]byte(data), &jobs); err != nil {
		return nil, fmt.Errorf("not a list of Prometheus scrape configs: %w", err)
	}
	seen := make(map[string]bool, len(jobs))
	for i, sc := range jobs {
		if sc == nil {
			return nil, fmt.Errorf("entry %d is empty", i)
		}
		if seen[sc.JobName] {
			return nil, fmt.Errorf("found multiple scrape configs with job name %q", sc.JobName)
		}
		seen[sc.JobName] = true
	}
	return jobs, nil
}

// additional returns the cached additional jobs and Result when the
// Secret key still reads the same in res, else nil jobs and a nil Result.
func (c *Cache) additional(res *resolver) ([]*promconfig.ScrapeConfig, *Result) {
	if c == nil || c.extra == nil {
		return nil, nil
	}
	for i := range c.extra.reads {
		if !res.unchanged(&c.extra.reads[i]) {
			return nil, nil
		}
	}
	c.extraUsed = true
	r := c.extra.result
	return c.extra.jobs, &r
}

// putAdditional remembers the outcome of loading the additional jobs.
func (c *Cache) putAdditional(reads []lookup, jobs []*promconfig.ScrapeConfig, r Result) {
	if c == nil {
		return
	}
	c.extra = &additionalEntry{reads: reads, jobs: jobs, result: r}
	c.extraUsed = true
}
