package sharding

import (
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
)

// ReplicaRelabelConfig returns the target relabeling rule that puts the
// replica label on the targets several members scrape, so that their
// copies never collide at the receiver. AppendReplicaRelabeling adds it
// after the user's relabelings, so a labeldrop, labelkeep or labelmap
// cannot remove it. It returns nil when label is empty.
//
// With replicationFactor > 1 in ReplicationRank mode the value is the one
// the filter puts on the target groups it sends (replicaMetaLabel): the
// owner's rank, or the member's name for a target whose relabeling set
// __tmp_disable_sharding. Otherwise (replication factor 1, or
// ReplicationIdentical, whose copies carry identical labels) only targets
// whose relabeling set __tmp_disable_sharding are labelled, with self, the
// member's name.
func ReplicaRelabelConfig(label, self string, replicationFactor int, mode ReplicationMode) *relabel.Config {
	if label == "" {
		return nil
	}
	rc := relabel.DefaultRelabelConfig
	rc.Action = relabel.Replace
	rc.TargetLabel = label
	rc.NameValidationScheme = model.UTF8Validation
	rc.Regex = relabel.MustNewRegexp("(.+)")
	if replicationFactor > 1 && mode == ReplicationRank {
		rc.SourceLabels = model.LabelNames{replicaMetaLabel}
		rc.Replacement = "$1"
		return &rc
	}
	rc.SourceLabels = model.LabelNames{DisableShardingLabel}
	rc.Replacement = self
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
