//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// objectHealth is /api/v1/status/object-health?scope=cluster.
type objectHealth struct {
	Data struct {
		Objects []struct {
			Object      string
			Targets, Up int
			Stale       []string
		} `json:"objects"`
		Members []struct {
			Name  string
			Stale bool
			Error string
		} `json:"members"`
	} `json:"data"`
	Warnings []string `json:"warnings"`
}

// TestClusterHealthUnreachablePeer: three replicas in network namespaces;
// one (the victim) stays in the cluster (gossip works) but its HTTP
// endpoint stops answering the others (its replies to them are dropped, so
// their requests hang). The observer's cluster-wide target counts mark
// only the objects the victim has targets of as stale, and keep updating
// the others': a target of a monitor owned by the third member goes down
// and the observer shows it at once. The status page says whose counts
// are stale.
func TestClusterHealthUnreachablePeer(t *testing.T) {
	ctx := context.Background()
	e := newShardEnv(t, "unr")
	require.NoError(t, e.bed.CreateNamespace(ctx, "unr-solo", nil))
	soloHost, err := e.bed.Netns(ctx)
	require.NoError(t, err)
	solo, err := soloHost.AddTargets(ctx, "unr-solo-app", 1, testbed.TargetOptions{})
	require.NoError(t, err)
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "unr-solo", Name: "app", Labels: map[string]string{"app": "app"}, Targets: solo}))
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("unr-solo", "app"))
	require.NoError(t, err)
	e.targets = append(e.targets, solo...) // for partitioned
	hosts := map[string]*testbed.Host{}
	reps := map[string]*testbed.Promshard{}
	names := []string{"u1", "u2", "u3"}
	for i, name := range names {
		h, err := e.bed.Netns(ctx)
		require.NoError(t, err)
		hosts[name] = h
		rw, err := h.ForwardURL(e.rcv.WriteURL())
		require.NoError(t, err)
		args := []string{"--remote-write.url=" + rw, "--scrape.interval=1s", "--remote-write.batch-send-deadline=250ms"}
		if i > 0 {
			args = append(args, "--cluster.join="+hosts[names[0]].GossipAddrIn())
		}
		reps[name] = startPromshard(t, e.bed, testbed.PromshardOptions{Name: name, Host: h, Gossip: true, Args: args})
	}
	eventually(t, 30*time.Second, "3 replicas split the targets", partitioned(e, reps, 1))

	// The solo monitor's one target has one owner; the victim and the
	// observer are the two others.
	var owner string
	eventually(t, 30*time.Second, "the solo target has an owner", func(ctx context.Context) error {
		own, err := owned(ctx, reps)
		if err != nil {
			return err
		}
		for name, urls := range own {
			if urls[solo[0].URL()] {
				owner = name
				return nil
			}
		}
		return fmt.Errorf("nobody owns %s", solo[0].URL())
	})
	others := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == owner })
	victim, observer := others[0], others[1]
	t.Logf("solo target owned by %s; %s becomes unreachable, %s observes", owner, victim, observer)
	const fleet, soloObj = "ServiceMonitor/unr/fleet", "ServiceMonitor/unr-solo/app"
	// The observer waits up to the peer timeout (5 s) for a peer that
	// does not answer: ask it with more patience than the bed's client.
	patient := &http.Client{Timeout: 15 * time.Second}
	get := func(path string) ([]byte, error) {
		resp, err := patient.Get(reps[observer].WebURL + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", path, resp.Status)
		}
		return b, err
	}
	report := func(context.Context) (objectHealth, error) {
		var h objectHealth
		b, err := get("/api/v1/status/object-health?scope=cluster")
		if err == nil {
			err = json.Unmarshal(b, &h)
		}
		return h, err
	}
	eventually(t, 30*time.Second, "every member answers, every object counted", func(ctx context.Context) error {
		h, err := report(ctx)
		if err != nil {
			return err
		}
		for _, m := range h.Data.Members {
			if m.Stale {
				return fmt.Errorf("member %s stale: %s", m.Name, m.Error)
			}
		}
		for _, o := range h.Data.Objects {
			if o.Object == fleet && o.Targets == shardTargets && o.Up == shardTargets {
				return nil
			}
		}
		return fmt.Errorf("objects %+v", h.Data.Objects)
	})

	// Drop the victim's web replies to its two peers; gossip is untouched.
	u, err := url.Parse(reps[victim].WebURL)
	require.NoError(t, err)
	for _, peer := range []string{owner, observer} {
		_, err := hosts[victim].Exec(ctx, "ip", "rule", "add", "from", hosts[victim].ReplicaIP().String(), "to", hosts[peer].ReplicaIP().String(),
			"ipproto", "tcp", "sport", u.Port(), "blackhole")
		require.NoError(t, err)
	}
	cutAt := time.Now()
	require.NoError(t, soloHost.RemoveTarget(ctx, solo[0].Name))
	eventually(t, 60*time.Second, "the victim's objects stale, the solo monitor current with its target down", func(ctx context.Context) error {
		h, err := report(ctx)
		if err != nil {
			return err
		}
		var victimStale, ownerStale bool
		for _, m := range h.Data.Members {
			switch m.Name {
			case victim:
				victimStale = m.Stale
			case owner:
				ownerStale = m.Stale
			}
		}
		if !victimStale || ownerStale {
			return fmt.Errorf("members %+v", h.Data.Members)
		}
		got := map[string]string{}
		for _, o := range h.Data.Objects {
			got[o.Object] = fmt.Sprintf("%d/%d stale %v", o.Up, o.Targets, o.Stale)
		}
		if got[soloObj] != "0/1 stale []" || got[fleet] != fmt.Sprintf("%d/%d stale [%s]", shardTargets, shardTargets, victim) {
			return fmt.Errorf("objects %v", got)
		}
		return nil
	})
	t.Logf("victim stale and the solo target's loss counted %.2fs after the cut", time.Since(cutAt).Seconds())
	pageAt := time.Now()
	page, err := get("/")
	require.NoError(t, err)
	t.Logf("status page answered in %.2fs with one peer not answering (peer timeout 5s)", time.Since(pageAt).Seconds())
	require.Contains(t, string(page), "Stale: member "+victim+" did not answer", "the page says whose counts are stale")
	require.Contains(t, string(page), victim+" as of ", "the fleet's row names the stale member")
	// Gossip kept working: the victim still owns its share.
	require.NoError(t, partitioned(e, reps, 1)(ctx))
}
