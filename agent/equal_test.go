package agent

import (
	"math"
	"testing"

	commoncfg "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/stretchr/testify/require"
)

func TestSameContent(t *testing.T) {
	job := func(mod func(sc *promconfig.ScrapeConfig)) *promconfig.ScrapeConfig {
		sc := scrapeJob("j", "127.0.0.1:1")
		rc := relabel.DefaultRelabelConfig
		rc.Regex = relabel.MustNewRegexp("a.*")
		sc.RelabelConfigs = []*relabel.Config{&rc}
		if mod != nil {
			mod(sc)
		}
		return sc
	}
	require.True(t, sameContent(job(nil), job(nil)), "separately built equal jobs")
	for name, mod := range map[string]func(*promconfig.ScrapeConfig){
		"secret":        func(sc *promconfig.ScrapeConfig) { sc.HTTPClientConfig.BearerToken = commoncfg.Secret("x") },
		"regex":         func(sc *promconfig.ScrapeConfig) { sc.RelabelConfigs[0].Regex = relabel.MustNewRegexp("b.*") },
		"relabel count": func(sc *promconfig.ScrapeConfig) { sc.RelabelConfigs = nil },
		"header map":    func(sc *promconfig.ScrapeConfig) { sc.Params = map[string][]string{"a": {"b"}} },
		"sd target":     func(sc *promconfig.ScrapeConfig) { *sc = *scrapeJob("j", "127.0.0.1:2") },
		"interval":      func(sc *promconfig.ScrapeConfig) { sc.ScrapeInterval++ },
	} {
		require.False(t, sameContent(job(nil), job(mod)), name)
	}
	require.False(t, sameContent(math.NaN(), math.NaN()), "NaN, like reflect.DeepEqual")
	require.True(t, sameContent([]int(nil), []int(nil)))
	require.False(t, sameContent([]int(nil), []int{}), "nil and empty differ, like reflect.DeepEqual")
}
