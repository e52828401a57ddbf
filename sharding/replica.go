package sharding

import (
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
)

// ReplicaRelabelConfig returns the target relabeling rule that puts the
// replica label (value: this member's name) on the targets several members
// scrape, so that their copies never collide at the receiver: every target
// when replicationFactor > 1, otherwise only targets whose relabeling set
// __tmp_disable_sharding. AppendReplicaRelabeling adds it after the user's
// relabelings, so a labeldrop, labelkeep or labelmap cannot remove it. It
// returns nil when label is empty.
func ReplicaRelabelConfig(label, self string, replicationFactor int) *relabel.Config {
	if label == "" {
		return nil
	}
	rc := relabel.DefaultRelabelConfig
	rc.Action = relabel.Replace
	rc.TargetLabel = label
	rc.Replacement = self
	rc.NameValidationScheme = model.UTF8Validation
	if replicationFactor <= 1 {
		rc.SourceLabels = model.LabelNames{DisableShardingLabel}
		rc.Regex = relabel.MustNewRegexp("(.+)")
	}
	return &rc
}

// AppendReplicaRelabeling appends rule to the relabel configs of every scrape
// configuration, after all others. It never modifies a shared slice, and
// does nothing for a nil rule or a configuration that already ends with it.
func AppendReplicaRelabeling(cfgs []*config.ScrapeConfig, rule *relabel.Config) {
	if rule == nil {
		return
	}
	for _, sc := range cfgs {
		if n := len(sc.RelabelConfigs); n > 0 && sc.RelabelConfigs[n-1] == rule {
			continue
		}
		sc.RelabelConfigs = append(slices.Clip(sc.RelabelConfigs), rule)
	}
}
