package sharding

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// testKeys returns n ownership keys of realistic final targets.
func testKeys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = TargetKey("serviceMonitor/default/app/0", labels.FromStrings(
			"__address__", fmt.Sprintf("10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255),
			"__metrics_path__", "/metrics",
			"__scheme__", "http",
			"instance", fmt.Sprintf("10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255),
			"job", "app",
			"namespace", "default",
		))
	}
	return keys
}

func memberNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "promshard-" + strconv.Itoa(i)
	}
	return names
}

func TestRendezvousOwners(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []string
		r       int
		want    int
	}{
		{"no members", nil, 1, 0},
		{"r zero", []string{"a", "b"}, 0, 0},
		{"one of one", []string{"a"}, 1, 1},
		{"one of three", []string{"a", "b", "c"}, 1, 1},
		{"two of three", []string{"a", "b", "c"}, 2, 2},
		{"r above member count", []string{"a", "b"}, 5, 2},
		{"duplicates count once", []string{"a", "a", "b"}, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewRendezvous(tc.members...)
			for _, k := range testKeys(200) {
				got := h.Owners(k, tc.r, nil)
				require.Len(t, got, tc.want)
				require.Len(t, slices.Compact(slices.Sorted(slices.Values(got))), tc.want, "owners must be distinct")
				for _, o := range got {
					require.Contains(t, tc.members, o)
				}
				if tc.want > 0 {
					require.Equal(t, h.Owners(k, 1, nil)[0], got[0], "rank 0 must not depend on r")
				}
			}
		})
	}
}

func TestOwnersIndependentOfMemberOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	members := memberNames(7)
	for _, k := range testKeys(2000) {
		shuffled := slices.Clone(members)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for r := 1; r <= 3; r++ {
			require.Equal(t, Owners(k, members, r), Owners(k, shuffled, r))
		}
	}
}

// movedFraction returns the fraction of keys whose owner differs between
// the two member sets and checks every moved key moved as HRW promises.
func movedFraction(t testing.TB, keys []uint64, before, after []string) float64 {
	b, a := NewRendezvous(before...), NewRendezvous(after...)
	moved := 0
	for _, k := range keys {
		ob, oa := b.Owners(k, 1, nil)[0], a.Owners(k, 1, nil)[0]
		if ob == oa {
			continue
		}
		moved++
		if len(after) > len(before) {
			require.NotContains(t, before, oa, "a key may only move to the newcomer")
		} else {
			require.NotContains(t, after, ob, "only the lost member's keys may move")
		}
	}
	return float64(moved) / float64(len(keys))
}

func TestMovesOnMembershipChange(t *testing.T) {
	keys := testKeys(100_000)
	for _, n := range []int{3, 10, 50} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			names := memberNames(n + 1)
			join := movedFraction(t, keys, names[:n], names)
			require.LessOrEqual(t, join, 1.1/float64(n+1), "N→N+1")
			require.Greater(t, join, 0.0)

			leave := movedFraction(t, keys, names[:n], names[:n-1])
			require.LessOrEqual(t, leave, 1.1/float64(n), "N→N−1 moves the lost member's share")
			require.Greater(t, leave, 0.0)
		})
	}
}

// loadRatio returns max/mean keys per member.
func loadRatio(keys []uint64, members []string) float64 {
	h := NewRendezvous(members...)
	counts := map[string]int{}
	for _, k := range keys {
		counts[h.Owners(k, 1, nil)[0]]++
	}
	maxCount := 0
	for _, c := range counts {
		maxCount = max(maxCount, c)
	}
	return float64(maxCount) / (float64(len(keys)) / float64(len(members)))
}

func TestBalance(t *testing.T) {
	require.LessOrEqual(t, loadRatio(testKeys(10_000), memberNames(10)), 1.10)
}

func TestTargetKey(t *testing.T) {
	base := func(extra ...string) labels.Labels {
		return labels.FromStrings(append([]string{
			"__address__", "10.0.0.1:80", "__metrics_path__", "/metrics", "__scheme__", "http",
			"__scrape_interval__", "2s", "__scrape_timeout__", "2s", "__scrape_native_histograms__", "false",
			"__always_scrape_classic_histograms__", "false", "__convert_classic_histograms_to_nhcb__", "false",
			"instance", "10.0.0.1:80", "job", "x",
		}, extra...)...)
	}
	with := func(name, value string) labels.Labels {
		return labels.NewBuilder(base()).Set(name, value).Labels()
	}
	a := base()
	// same1 and same2: the key equals the base target's key of job "j"
	// under KeyJobLabels and KeySeries.
	for _, tc := range []struct {
		name         string
		job          string
		lset         labels.Labels
		same1, same2 bool
	}{
		{"copy", "j", a.Copy(), true, true},
		{"interval", "j", with("__scrape_interval__", "3s"), true, true},
		{"timeout", "j", with("__scrape_timeout__", "1s"), true, true},
		{"native histograms", "j", with("__scrape_native_histograms__", "true"), true, true},
		{"classic histograms", "j", with("__always_scrape_classic_histograms__", "true"), true, true},
		{"nhcb", "j", with("__convert_classic_histograms_to_nhcb__", "true"), true, true},
		{"disable sharding flag", "j", with(DisableShardingLabel, "true"), true, true},
		{"replica label", "j", with("promshard_replica", "r1"), true, true},
		{"other job, same series", "k", a, false, true},
		{"address", "j", with("__address__", "10.0.0.2:80"), false, true},
		{"scheme", "j", with("__scheme__", "https"), false, true},
		{"path", "j", with("__metrics_path__", "/other"), false, true},
		{"param", "j", with("__param_module", "icmp"), false, true},
		{"temporary label", "j", with("__tmp_team", "a"), false, true},
		{"target label", "j", with("pod", "p"), false, false},
		{"job label", "j", with("job", "y"), false, false},
		{"instance label", "j", with("instance", "10.0.0.2:80"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []KeyVersion{KeyJobLabels, KeySeries} {
				k := NewKeyer("promshard_replica")
				k.SetVersion(v)
				want := k.Key("j", a)
				same := map[KeyVersion]bool{KeyJobLabels: tc.same1, KeySeries: tc.same2}[v]
				if same {
					require.Equal(t, want, k.Key(tc.job, tc.lset), "version %d", v)
				} else {
					require.NotEqual(t, want, k.Key(tc.job, tc.lset), "version %d", v)
				}
			}
		})
	}
	t.Run("versions differ", func(t *testing.T) {
		k := NewKeyer("")
		require.Equal(t, LatestKeyVersion, k.Version())
		v2 := k.Key("j", a)
		k.SetVersion(KeyJobLabels)
		require.NotEqual(t, v2, k.Key("j", a))
		require.Equal(t, v2, TargetKey("j", a))
	})
	t.Run("label boundaries", func(t *testing.T) {
		k := NewKeyer("")
		require.NotEqual(t, k.Key("j", labels.FromStrings("a", "bc")), k.Key("j", labels.FromStrings("ab", "c")))
	})
	t.Run("__tmp_hash", func(t *testing.T) {
		k := NewKeyer("")
		h1 := k.Key("j", with(HashLabel, "pod-1"))
		require.Equal(t, StringKey("pod-1"), h1)
		other := labels.NewBuilder(base()).Set("__address__", "10.9.9.9:81").Set(HashLabel, "pod-1").Labels()
		require.Equal(t, h1, k.Key("other-job", other), "same __tmp_hash, other job and address: same key")
		require.NotEqual(t, h1, k.Key("j", with(HashLabel, "pod-2")))
		require.Equal(t, k.Key("j", a), k.Key("j", with(HashLabel, "")), "empty __tmp_hash is ignored")
	})
}

// BenchmarkTargetKey measures the key of one final target with the scrape
// setting labels (the filter computes it once per discovered target).
func BenchmarkTargetKey(b *testing.B) {
	lset := labels.FromStrings("__address__", "10.0.0.1:8080", "__metrics_path__", "/metrics", "__scheme__", "http",
		"__scrape_interval__", "30s", "__scrape_timeout__", "10s", "__scrape_native_histograms__", "false",
		"__always_scrape_classic_histograms__", "false", "__convert_classic_histograms_to_nhcb__", "false",
		"container", "app", "endpoint", "metrics", "instance", "10.0.0.1:8080", "job", "app",
		"namespace", "default", "pod", "app-7d9f8b6c5-x2x9z", "service", "app")
	k := NewKeyer("promshard_replica")
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Key("serviceMonitor/default/app/0", lset)
	}
}

func ExampleOwners() {
	members := []string{"promshard-0", "promshard-1", "promshard-2"}
	key := TargetKey("podMonitor/default/app/0", labels.FromStrings(
		"__address__", "10.1.2.3:8080", "instance", "10.1.2.3:8080", "job", "default/app"))

	// Every member computes the same owners, whatever order it lists peers in.
	a := Owners(key, members, 2)
	b := Owners(key, []string{"promshard-2", "promshard-0", "promshard-1"}, 2)
	fmt.Println(len(a), slices.Equal(a, b))

	// When a member that does not own the key leaves, the key stays put.
	owner := a[0]
	rest := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m != owner && m == a[1] })
	fmt.Println(len(rest), Owners(key, rest, 1)[0] == owner)
	// Output:
	// 2 true
	// 2 true
}

func BenchmarkMovedFraction(b *testing.B) {
	keys := testKeys(100_000)
	for _, n := range []int{3, 10, 50} {
		names := memberNames(n + 1)
		b.Run(fmt.Sprintf("join/N=%d", n), func(b *testing.B) {
			var f float64
			for b.Loop() {
				f = movedFraction(b, keys, names[:n], names)
			}
			b.ReportMetric(f, "moved")
			b.ReportMetric(1/float64(n+1), "ideal")
		})
		b.Run(fmt.Sprintf("leave/N=%d", n), func(b *testing.B) {
			var f float64
			for b.Loop() {
				f = movedFraction(b, keys, names[:n], names[:n-1])
			}
			b.ReportMetric(f, "moved")
			b.ReportMetric(1/float64(n), "ideal")
		})
	}
}

func BenchmarkBalance10Members10kTargets(b *testing.B) {
	keys, members := testKeys(10_000), memberNames(10)
	var ratio float64
	for b.Loop() {
		ratio = loadRatio(keys, members)
	}
	b.ReportMetric(ratio, "max/mean")
}

func BenchmarkRecompute100kTargets20Members(b *testing.B) {
	keys, members := testKeys(100_000), memberNames(20)
	dst := make([]string, 0, 1)
	b.ReportAllocs()
	for b.Loop() {
		h := NewRendezvous(members...)
		for _, k := range keys {
			dst = h.Owners(k, 1, dst[:0])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
}

func TestOwnerOf(t *testing.T) {
	key := StringKey("default/my-monitor")
	alive := []Member{{Name: "a", State: StateParticipant}, {Name: "b", State: StateParticipant}}
	owner := OwnerOf(key, alive)
	require.Equal(t, Owners(key, []string{"a", "b"}, 1)[0], owner)
	require.Equal(t, owner, OwnerOf(key, append(slices.Clone(alive), Member{Name: "zz", State: StateDead})), "dead members own nothing")
	require.Empty(t, OwnerOf(key, []Member{{Name: "a", State: StateLeft}}))
	require.Empty(t, OwnerOf(key, nil))
}
