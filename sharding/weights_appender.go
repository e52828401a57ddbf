package sharding

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
)

// SeriesCounter measures what each scrape loop delivers: it is the scrape
// manager's storage, passes every call on to the next storage and counts,
// per scrape (one appender, one commit), the samples appended that are not
// staleness markers: the target's series after metric relabeling, plus
// the scrape loop's own report series (up, scrape_duration_seconds, ...).
// The scrape manager must put the target into the appender's context
// (scrape.Options.PassMetadataInContext); appenders without one count
// nothing. FilterOptions.Series reads the counts.
type SeriesCounter struct {
	storage.AppendableV2

	mtx    sync.Mutex
	counts map[uint64]seriesCount // by loop identity (loopKey)
	pruned time.Time
}

type seriesCount struct {
	n  int
	at time.Time
}

// seriesForget is how long a loop's count outlives its last commit.
const seriesForget = 10 * time.Minute

var _ storage.AppendableV2 = (*SeriesCounter)(nil)

// NewSeriesCounter returns a SeriesCounter passing appends on to next.
func NewSeriesCounter(next storage.AppendableV2) *SeriesCounter {
	return &SeriesCounter{AppendableV2: next, counts: map[uint64]seriesCount{}}
}

// AppenderV2 implements storage.AppendableV2.
func (c *SeriesCounter) AppenderV2(ctx context.Context) storage.AppenderV2 {
	next := c.AppendableV2.AppenderV2(ctx)
	t, ok := scrape.TargetFromContext(ctx)
	if !ok || t == nil {
		return next
	}
	return &countingAppender{AppenderV2: next, c: c, t: t}
}

// Series returns the series the loop with identity loop (URL and public
// labels, as the filter sent it) delivered at its last scrape.
func (c *SeriesCounter) Series(loop uint64) (int, bool) {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	s, ok := c.counts[loop]
	return s.n, ok
}

func (c *SeriesCounter) record(t *scrape.Target, n int) {
	key := loopKey(t, labels.NewBuilder(labels.EmptyLabels()))
	now := time.Now()
	c.mtx.Lock()
	defer c.mtx.Unlock()
	c.counts[key] = seriesCount{n: n, at: now}
	if now.Sub(c.pruned) < seriesForget {
		return
	}
	c.pruned = now
	for k, s := range c.counts {
		if now.Sub(s.at) > seriesForget {
			delete(c.counts, k)
		}
	}
}

type countingAppender struct {
	storage.AppenderV2
	c *SeriesCounter
	t *scrape.Target
	n int
}

// Append implements storage.AppenderV2.
func (a *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if h != nil || fh != nil || !value.IsStaleNaN(v) {
		a.n++
	}
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

// Commit implements storage.AppenderTransaction.
func (a *countingAppender) Commit() error {
	err := a.AppenderV2.Commit()
	if err == nil && a.n > 0 {
		a.c.record(a.t, a.n)
	}
	return err
}
