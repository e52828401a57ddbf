package benchutil

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// UpTargets returns how many active targets the Prometheus-style
// /api/v1/targets at baseURL reports as up.
func UpTargets(ctx context.Context, baseURL string) (int, error) {
	resp, err := get(ctx, baseURL+"/api/v1/targets?state=active")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			ActiveTargets []struct {
				Health string `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	n := 0
	for _, t := range body.Data.ActiveTargets {
		if t.Health == "up" {
			n++
		}
	}
	return n, nil
}

// WaitUp polls until baseURL reports at least n targets up, or timeout.
func WaitUp(ctx context.Context, baseURL string, n int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := -1
	for time.Now().Before(deadline) {
		got, err := UpTargets(ctx, baseURL)
		if err == nil && got >= n {
			return time.Since(start), nil
		}
		last = got
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("%s: %d of %d targets up after %s", baseURL, last, n, timeout)
}
