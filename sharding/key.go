package sharding

import (
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// KeyVersion identifies how a final target's ownership key is derived.
// Members gossip the newest version they support, and every member uses the
// newest version all alive members support (Filter), so that a rolling
// upgrade never has two members computing different owners because they
// hash differently: the cluster switches once the last older member is
// gone, as on any membership change.
type KeyVersion int

const (
	// KeyJobLabels (version 1, the only key of promshard before key
	// versions were gossiped) hashes the job name with every target label
	// except the scrape-setting labels, __tmp_disable_sharding and the
	// replica label. Two jobs whose targets write the same series (two
	// ServiceMonitors selecting one Service port) usually get different
	// owners, so two members write one series and a strict receiver
	// refuses one of them as out of order.
	KeyJobLabels KeyVersion = 1
	// KeySeries (version 2) hashes the labels the target's series carry:
	// the final target labels without those starting with "__" (so no
	// __address__, __scheme__, __metrics_path__, __param_*, no job name
	// beyond the job label itself) and without the replica label. Targets
	// that write the same series have the same owner, whose WAL then drops
	// the second copy as one Prometheus would.
	KeySeries KeyVersion = 2
	// LatestKeyVersion is the newest version this build supports.
	LatestKeyVersion = KeySeries
)

// Valid reports whether this build knows the version.
func (v KeyVersion) Valid() bool { return v >= KeyJobLabels && v <= LatestKeyVersion }

// negotiate returns the newest version every one of supported (the newest
// versions alive members support; 0 for a member that did not say, which
// is an older promshard knowing only KeyJobLabels) supports, starting from
// this member's own newest version self.
func negotiate(self KeyVersion, supported ...KeyVersion) KeyVersion {
	v := self
	for _, s := range supported {
		if s < KeyJobLabels {
			s = KeyJobLabels
		}
		v = min(v, s)
	}
	return v
}

// Keyer computes ownership keys. It reuses a buffer, so it is not safe for
// concurrent use; the zero value is not usable, call NewKeyer.
type Keyer struct {
	version KeyVersion
	exclude []string // sorted label names left out of a KeyJobLabels key
	replica string   // left out of a KeySeries key
	buf     []byte
}

// NewKeyer returns a Keyer for version LatestKeyVersion that also leaves
// the given label out of the key (the replica label, whose value differs
// per member).
func NewKeyer(replicaLabel string) *Keyer {
	ex := append(slices.Clone(scrapeSettingLabels), DisableShardingLabel)
	if replicaLabel != "" {
		ex = append(ex, replicaLabel)
	}
	slices.Sort(ex)
	return &Keyer{version: LatestKeyVersion, exclude: slices.Compact(ex), replica: replicaLabel}
}

// Version returns the key version the Keyer computes.
func (k *Keyer) Version() KeyVersion { return k.version }

// SetVersion makes the Keyer compute keys of version v (a valid one).
func (k *Keyer) SetVersion(v KeyVersion) { k.version = v }

// Key returns the ownership key of a final target (its labels after target
// relabeling, as scrape.PopulateLabels returns them) of job:
//   - the non-empty value of __tmp_hash: StringKey(value), independent of
//     the job and the version;
//   - KeySeries: a hash of every label not starting with "__" except the
//     replica label;
//   - KeyJobLabels: a hash of the job name and every label except the
//     scrape setting labels (__scrape_interval__, __scrape_timeout__,
//     __scrape_native_histograms__, __always_scrape_classic_histograms__,
//     __convert_classic_histograms_to_nhcb__), __tmp_disable_sharding and
//     the replica label.
func (k *Keyer) Key(job string, lset labels.Labels) uint64 {
	if v := lset.Get(HashLabel); v != "" {
		return StringKey(v)
	}
	if k.version == KeyJobLabels {
		var h uint64
		h, k.buf = lset.HashWithoutLabels(k.buf, k.exclude...)
		return combine(xxhash.Sum64String(job), h)
	}
	b := k.buf[:0]
	lset.Range(func(l labels.Label) {
		if strings.HasPrefix(l.Name, "__") || l.Name == k.replica {
			return
		}
		b = append(append(append(append(b, l.Name...), 0xff), l.Value...), 0xff)
	})
	k.buf = b
	return xxhash.Sum64(b)
}

// TargetKey returns the ownership key of a final target as Keyer.Key does
// for LatestKeyVersion, without a replica label. Use a Keyer for many
// targets.
func TargetKey(job string, lset labels.Labels) uint64 {
	return NewKeyer("").Key(job, lset)
}
