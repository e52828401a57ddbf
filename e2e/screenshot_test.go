//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestStatusPageScreenshot renders a replica's status page in headless
// Chromium (Debian's chromium package) and checks the page and the picture.
func TestStatusPageScreenshot(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	require.NoError(t, err, "the status page test needs Debian's chromium package (apt-get install chromium); .ci/run installs it")

	ctx := context.Background()
	bed := startBed(t)
	monitoredService(t, bed, "page", "web", 4)
	bad := serviceMonitor("page", "broken", setLabel("x", "y"))
	bad.Spec.Endpoints[0].RelabelConfigs[0].Regex = "(["
	_, err = bed.ApplyMonitoring(ctx, bad)
	require.NoError(t, err)

	r1 := startPromshard(t, bed, testbed.PromshardOptions{Name: "page-0", IP: "127.0.0.21", Gossip: true, Args: []string{"--scrape.interval=1s"}})
	startPromshard(t, bed, testbed.PromshardOptions{Name: "page-1", IP: "127.0.0.22", Gossip: true, Args: []string{"--scrape.interval=1s", "--cluster.join=" + r1.GossipAddr}})
	eventually(t, 30*time.Second, "status page lists both members and the rejection", func(ctx context.Context) error {
		body, err := r1.Get(ctx, "/")
		if err != nil {
			return err
		}
		for _, want := range []string{"page-0", "page-1", "participant", "serviceMonitor/page/web/0", "ServiceMonitor", "page/broken", "up"} {
			if !bytes.Contains(body, []byte(want)) {
				return fmt.Errorf("status page lacks %q", want)
			}
		}
		return nil
	})

	out := filepath.Join(bed.Dir(), "status-page.png")
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--window-size=1400,1000", "--screenshot="+out, r1.WebURL+"/")
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "chromium: %s", msg)
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	b := img.Bounds()
	require.Equal(t, 1400, b.Dx())
	// A rendered page is not blank: count distinct colours on a coarse grid.
	colours := map[[3]uint32]bool{}
	for x := b.Min.X; x < b.Max.X; x += 7 {
		for y := b.Min.Y; y < b.Max.Y; y += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	require.Greater(t, len(colours), 8, "screenshot looks blank")
	if dst := os.Getenv("PROMSHARD_SCREENSHOT"); dst != "" {
		data, _ := os.ReadFile(out)
		_ = os.WriteFile(dst, data, 0o644)
	}
	t.Logf("status page screenshot: %s (%d colours sampled)", out, len(colours))
}
