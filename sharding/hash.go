// Package sharding decides which promshard replica scrapes which target.
//
// It owns three layers, each usable alone:
//   - hashing (hash.go): rendezvous (highest random weight) hashing of a 64-bit
//     target key onto a set of member names;
//   - membership (cluster.go): a hashicorp/memberlist cluster of replicas, with
//     join-list re-resolution, gossip encryption, wait-for-size and a graceful
//     leave;
//   - ownership (filter.go): a stage between Prometheus' discovery.Manager and
//     scrape.Manager that keeps only the final targets this member owns and
//     hands moved targets off without false staleness markers.
//
// Ownership key. A final target (its labels after the job's target
// relabeling, as scrape.PopulateLabels returns them) is identified by:
//   - the value of __tmp_hash, when a relabeling set it non-empty
//     (prometheus-operator's convention): xxhash of the value, the job
//     left out, so e.g. all endpoints of one pod share an owner;
//   - otherwise (key version KeySeries) xxhash of the labels its series
//     will carry: every label not starting with "__", except the replica
//     label. Targets that write the same series (two ServiceMonitors on
//     one Service port) thus always have the same owner, whose WAL drops
//     the duplicate samples as one Prometheus would, and a strict
//     remote-write receiver never sees one series from two writers.
//     Editing an interval, timeout, path or scheme moves no target.
//
// Key versions (key.go). The key of promshard before key versions
// (KeyJobLabels) hashed the job name with all labels but the scrape-setting
// ones. Every member gossips the newest version it supports, and all use the
// newest every alive member supports: a rolling upgrade keeps the old key
// until the last old member is gone, then every member re-keys as on a
// membership change (relabeling only the targets whose final labels it did
// not keep, see below).
//
// A target whose relabeling sets __tmp_disable_sharding non-empty is owned
// by every participant; ReplicaRelabelConfig labels each copy with the
// member's name.
//
// Replication (rank.go). With a replication factor R above 1 the best R
// participants of a target's rendezvous order own it. In ReplicationRank
// mode the filter gives each owned target its owner's rank (0 to R-1) as a
// discovered label that the replica rule copies into the replica label,
// and RankRemoteWrites splits every remote write into one queue per rank,
// so that a request carries one rank only (HA trackers decide per
// request). Rank r of a target is one series identity whichever member
// holds it: a member whose rank for a target changes hands its old rank's
// series off like a moved target. In ReplicationIdentical mode the copies
// carry identical labels, for storage that deduplicates them.
//
// Member states: a member is joining (owns nothing, peers keep its share)
// until Cluster.Participate, which cmd calls once informers synced, the
// first configuration is applied and Filter.Primed; then participant (it
// gossips that HandoffDelay before it starts scraping, so peers stop
// first); left once it announced its leave, dead when memberlist declares
// it so. Only participants own targets.
//
// Strategies: hash (rendezvous over all participants), zone (rendezvous
// over the participants of the target's zone, spill-over to all) and node
// (the participants on the target's node; none there: unowned and counted).
//
// Incremental filtering. Discovery hands the filter every job at every
// update, up to several times a second under pod churn, while usually only
// a few jobs changed. A job counts as unchanged when its input lists the
// same *targetgroup.Group pointers as before (in any order: the discovery
// manager lists a provider's groups in map order) under the same
// *config.ScrapeConfig pointer (SetScrapeConfigs callers should hand the
// same pointer for a job whose configuration did not change: a new pointer
// relabels the job); it keeps its relabeled targets. A configuration change
// visits only the jobs whose pointer changed (ChangeScrapeConfigs takes
// just those), so a monitor edit costs its own jobs, not all. If
// moreover the member view (readiness, this member's state, the
// participants and, as the strategy uses them, their nodes or zones) is the
// one it was last assigned under and none of its targets was held back, it
// keeps its output: the filter sends the identical []*targetgroup.Group as
// before, does no handoff bookkeeping for it and keeps its share of the
// statistics, which are running totals. A membership change thus assigns
// every job again, a discovery update only the jobs whose groups changed.
// A membership change relabels only the targets this member gains that it
// never sent: to save memory, a prepared target keeps its final labels only
// once it was sent, and a job keeps nothing of the targets its relabeling
// drops (filter_prepare.go). Every output still holds every configured job of
// the input; a later stage can tell the changed ones by slice identity or
// by comparing the groups element-wise by pointer.
//
// Wiring (cmd/ and agent/): NewCluster, then NewFilter with the cluster as
// Members and the scrape.Manager as Staleness; run Cluster.Run,
// Cluster.ParticipateWhen and Filter.Run(ctx, discoveryManager.SyncCh(), ch)
// as oklog/run actors, with scrapeManager.Run(ch) reading ch; call
// Filter.SetScrapeConfigs (all jobs) or Filter.ChangeScrapeConfigs (the
// changed ones) after every scrape.Manager.ApplyConfig, append
// ReplicaRelabelConfig to the generated scrape configurations
// (AppendReplicaRelabeling); serve NewStatusHandler at /api/v1/cluster and
// answer /-/ready with Cluster.Participant. On SIGTERM call Filter.Release,
// wait until the scrape manager runs no loop, then Cluster.Leave: no series
// is ever written by two members at once (a remote-write 1.0 receiver
// rejects a whole batch for one out-of-order sample).
// Lower scrape.Options.DiscoveryReloadInterval (default 5 s): a membership
// change reaches scraping only at the scrape manager's next reload.
//
// The package knows nothing of Kubernetes custom resources and must not import
// promshard's config, discovery or agent packages. It talks to Prometheus only
// through plain target groups, *config.ScrapeConfig values and the small
// interfaces defined here.
package sharding

import (
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
)

// Sharder assigns keys to members. It is the two-method interface the
// ownership filter depends on; Rendezvous is the implementation.
type Sharder interface {
	// SetMembers replaces the member set. The order of names does not matter.
	SetMembers(names []string)
	// Owners appends to dst the names of the top-r members for key, best rank
	// first, and returns the extended slice. r is capped at the member count.
	Owners(key uint64, r int, dst []string) []string
}

var _ Sharder = (*Rendezvous)(nil)

// Rendezvous implements Sharder with rendezvous (highest random weight)
// hashing: every member scores every key and the highest scores own it.
// Adding a member moves only the keys the newcomer now wins (1/(N+1) of them
// in expectation); removing one moves only the keys it owned.
//
// A Rendezvous is not safe for concurrent SetMembers and Owners calls.
type Rendezvous struct {
	names  []string // sorted, deduplicated
	hashes []uint64 // hashes[i] belongs to names[i]
	ranked []scored // scratch space for r > 1
}

type scored struct {
	score uint64
	idx   int
}

// NewRendezvous returns a Rendezvous over the given members.
func NewRendezvous(names ...string) *Rendezvous {
	r := &Rendezvous{}
	r.SetMembers(names)
	return r
}

// SetMembers implements Sharder. Duplicate names count once.
func (h *Rendezvous) SetMembers(names []string) {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	h.names = sorted
	h.hashes = make([]uint64, len(sorted))
	for i, n := range sorted {
		h.hashes[i] = xxhash.Sum64String(n)
	}
}

// Members returns the sorted member names. The slice must not be modified.
func (h *Rendezvous) Members() []string { return h.names }

// Owners implements Sharder. It does not allocate when dst has room for r names.
func (h *Rendezvous) Owners(key uint64, r int, dst []string) []string {
	n := len(h.hashes)
	r = min(r, n)
	if r <= 0 {
		return dst
	}
	if r == 1 {
		best, bestScore := 0, score(key, h.hashes[0])
		for i := 1; i < n; i++ {
			if s := score(key, h.hashes[i]); s > bestScore {
				best, bestScore = i, s
			}
		}
		return append(dst, h.names[best])
	}
	// Keep the r best in h.ranked, ordered by descending score. Ties (which
	// need a 64-bit collision) go to the lower index, i.e. the smaller name,
	// so the result stays independent of input order.
	top := h.ranked[:0]
	for i := range n {
		s := scored{score: score(key, h.hashes[i]), idx: i}
		if len(top) == r && s.score <= top[r-1].score {
			continue
		}
		pos := len(top)
		for pos > 0 && top[pos-1].score < s.score {
			pos--
		}
		if len(top) < r {
			top = append(top, scored{})
		}
		copy(top[pos+1:], top[pos:len(top)-1])
		top[pos] = s
	}
	h.ranked = top
	for _, s := range top {
		dst = append(dst, h.names[s.idx])
	}
	return dst
}

// Owners returns the top-r owners of key among members, best rank first. The
// result does not depend on the order of members. It builds a Rendezvous on
// every call: use a Rendezvous directly for many keys.
func Owners(key uint64, members []string, r int) []string {
	return NewRendezvous(members...).Owners(key, r, nil)
}

// score mixes a key with a member hash (the murmur3 64-bit finalizer over
// their xor): a cheap, well-distributed, allocation-free pseudo-random weight.
func score(key, member uint64) uint64 {
	x := key ^ member
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Labels of prometheus-operator's sharding convention, read from a target's
// labels after relabeling.
const (
	// HashLabel, when a relabeling sets it to a non-empty value, is the
	// target's ownership key: targets with the same value (e.g. the pod
	// name) have the same owner, whatever their job.
	HashLabel = "__tmp_hash"
	// DisableShardingLabel, when a relabeling sets it to a non-empty value,
	// makes every participant scrape the target.
	DisableShardingLabel = "__tmp_disable_sharding"
)

// scrapeSettingLabels are the labels Prometheus' scrape package
// (scrape/target.go PopulateDiscoveredLabels, v0.316.0) puts on every target
// only to carry a per-target scrape setting: they do not identify the
// endpoint, so changing an interval, a timeout or a native-histogram setting
// must not move the target. __address__, __scheme__, __metrics_path__ and
// __param_* do identify it and stay in the key.
var scrapeSettingLabels = []string{
	"__always_scrape_classic_histograms__",
	"__convert_classic_histograms_to_nhcb__",
	model.ScrapeIntervalLabel,
	"__scrape_native_histograms__",
	model.ScrapeTimeoutLabel,
}

// StringKey returns a key for an arbitrary string, e.g. an object name whose
// status only one member should write.
func StringKey(s string) uint64 {
	return xxhash.Sum64String(s)
}

func combine(a, b uint64) uint64 {
	return score(a*0x9e3779b97f4a7c15, b)
}

// OwnerOf returns the alive member among members that owns key, e.g. the
// one member that writes a custom resource's status (key: StringKey of its
// namespace/name). It returns "" when no member is alive.
func OwnerOf(key uint64, members []Member) string {
	var alive []string
	for _, m := range members {
		if m.State.Alive() {
			alive = append(alive, m.Name)
		}
	}
	if len(alive) == 0 {
		return ""
	}
	return NewRendezvous(alive...).Owners(key, 1, nil)[0]
}
