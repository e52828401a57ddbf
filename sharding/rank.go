package sharding

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/scrape"
)

// ReplicationMode says how the copies of a target scraped by several
// members (replication factor above 1) tell themselves apart.
type ReplicationMode string

const (
	// ReplicationRank labels every copy with the replica label = the
	// owner's rank for the target, 0 to R-1 in rendezvous order, so that
	// rank r of every target forms one complete stream, written by
	// whichever member holds that rank. Each remote-write endpoint is
	// expanded into one queue per rank (RankRemoteWrites), so that one
	// request never mixes ranks: Mimir's and Cortex' HA tracker accept or
	// drop a whole request by its first series' cluster and replica
	// labels. A target whose rank at a member changes is a new series
	// there; its old rank's series moves to the member now holding that
	// rank, as on a handoff. Targets whose relabeling sets
	// __tmp_disable_sharding are labelled with the member's name instead and
	// sent through one more queue per endpoint.
	ReplicationRank ReplicationMode = "rank"
	// ReplicationIdentical gives the copies identical labels (no replica
	// label), for storage that deduplicates identical series itself
	// (VictoriaMetrics with -dedup.minScrapeInterval, Thanos or Prometheus
	// compaction with vertical compaction). Remote-write 1.0 receivers
	// that refuse out-of-order samples (Prometheus) refuse the second
	// copy's writes.
	ReplicationIdentical ReplicationMode = "identical"
)

// Valid reports whether m is a known mode.
func (m ReplicationMode) Valid() bool { return m == ReplicationRank || m == ReplicationIdentical }

// replicaMetaLabel carries, on the target groups the filter sends in rank
// mode, the value the replica label gets; the rule of ReplicaRelabelConfig
// copies it after the user's relabelings, and Prometheus deletes it, as
// every __meta_ label, once relabeling is done.
const replicaMetaLabel = model.MetaLabelPrefix + "promshard_replica"

// rankMode reports whether the filter labels owned targets with their rank.
func (f *Filter) rankMode() bool {
	return f.opts.ReplicationFactor > 1 && f.opts.ReplicationMode == ReplicationRank
}

// replicaValue returns, in rank mode, the replica label value of an owned
// entry (owners: its owners, best rank first): its rank, or this member's
// name for a target every participant scrapes. Outside rank mode it
// returns "": the target is passed on as discovered.
func (f *Filter) replicaValue(e *preparedEntry, owners []string) string {
	if !f.rankMode() {
		return ""
	}
	if e.all {
		return f.opts.Self
	}
	return strconv.Itoa(slices.Index(owners, f.opts.Self))
}

// rankHeld reports whether, under view v, some member holds the rank a
// target was sent with (value; always true outside rank mode and for a
// member-named copy): as many ranks exist as owners, the replication
// factor or the number of participants if smaller.
func (f *Filter) rankHeld(v *memberView, value string) bool {
	if !f.rankMode() {
		return true
	}
	r, err := strconv.Atoi(value)
	return err != nil || r < min(f.opts.ReplicationFactor, len(v.names))
}

// valuedTarget is sentTarget for an entry sent with replica label value
// (rank mode), and the discovered labels to send for it: with value "",
// entry itself; otherwise a copy of entry with replicaMetaLabel = value,
// whose target, as the scrape pool builds it, has the entry's labels with
// the replica label set. The entry caches both for the value it was last
// sent with, so that only a rank change copies labels again.
func (f *Filter) valuedTarget(cfg *config.ScrapeConfig, tg *targetgroup.Group, e *preparedEntry, entry model.LabelSet, value string) (model.LabelSet, *scrape.Target, uint64) {
	if value == "" {
		t, key := f.sentTarget(cfg, tg, e, entry)
		return entry, t, key
	}
	if e.sent == nil || e.sent.entry == nil || e.sent.value != value {
		ls := make(model.LabelSet, len(entry)+1)
		for k, v := range entry {
			ls[k] = v
		}
		ls[replicaMetaLabel] = model.LabelValue(value)
		e.sent = &sentCache{entry: ls, value: value}
		if !e.failed {
			lb := labels.NewBuilder(e.lset)
			lb.Set(f.opts.ReplicaLabel, value)
			e.sent.target = scrape.NewTarget(lb.Labels(), cfg, ls, tg.Labels)
			e.sent.key = loopKey(e.sent.target, lb)
		}
	}
	return e.sent.entry, e.sent.target, e.sent.key
}

// RankRemoteWrites expands, for rank mode with replicationFactor ranks,
// every remote-write configuration into one queue per rank, named
// <name>-rank<r>, whose first write relabeling keeps only the series whose
// label is r, and one more, <name>-members, for every other series: those
// labelled with a member's name (targets whose relabeling sets
// __tmp_disable_sharding) or not labelled at all. Every series goes to
// exactly one queue, and every request of a rank queue carries one rank
// only.
// The keep rule comes before the configuration's own write relabelings,
// which may drop the label. A configuration without a name is named by a
// hash of its URL (and its index, for a URL listed twice). With replicationFactor below 2 or an empty label it
// returns rws as it is. The configurations returned are shallow copies:
// nobody may modify what they share with rws.
func RankRemoteWrites(rws []*config.RemoteWriteConfig, label string, replicationFactor int) []*config.RemoteWriteConfig {
	if replicationFactor < 2 || label == "" {
		return rws
	}
	out := make([]*config.RemoteWriteConfig, 0, len(rws)*(replicationFactor+1))
	unnamed := map[string]bool{}
	for i, rw := range rws {
		if rw == nil {
			out = append(out, rw) // refused by validation later
			continue
		}
		name := rw.Name
		if name == "" {
			name = urlName(rw)
			if unnamed[name] {
				name += "-" + strconv.Itoa(i) // the same URL again, e.g. for another tenant
			}
			unnamed[name] = true
		}
		ranks := make([]string, replicationFactor)
		for r := range replicationFactor {
			ranks[r] = strconv.Itoa(r)
			out = append(out, withFirstRule(rw, fmt.Sprintf("%s-rank%d", name, r), relabel.Keep, label, ranks[r]))
		}
		out = append(out, withFirstRule(rw, name+"-members", relabel.Drop, label, strings.Join(ranks, "|")))
	}
	return out
}

// withFirstRule returns a copy of rw named name whose write relabelings
// start with action on label matching regex.
func withFirstRule(rw *config.RemoteWriteConfig, name string, action relabel.Action, label, regex string) *config.RemoteWriteConfig {
	rc := relabel.DefaultRelabelConfig
	rc.Action = action
	rc.SourceLabels = model.LabelNames{model.LabelName(label)}
	rc.Regex = relabel.MustNewRegexp(regex)
	rc.NameValidationScheme = model.UTF8Validation
	c := *rw
	c.Name = name
	c.WriteRelabelConfigs = append([]*relabel.Config{&rc}, rw.WriteRelabelConfigs...)
	return &c
}

// urlName names a remote write without a name: the first 6 hex digits of
// a hash of its URL, as Prometheus names queues by a hash.
func urlName(rw *config.RemoteWriteConfig) string {
	u := ""
	if rw.URL != nil && rw.URL.URL != nil {
		u = rw.URL.String()
	}
	h := sha256.Sum256([]byte(u))
	return hex.EncodeToString(h[:3])
}
