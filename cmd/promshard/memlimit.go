package main

import (
	"fmt"
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// defaultMemLimitRatio is Prometheus' --auto-gomemlimit.ratio default: the
// share of the container's memory limit the Go heap may aim for, leaving
// the rest for non-heap memory (stacks, the WAL's page cache is not
// counted) before the kernel's OOM killer.
const defaultMemLimitRatio = 0.9

// setMemoryLimit sets the Go runtime's soft memory limit (GOMEMLIMIT) to
// ratio × what provider reports, as Prometheus' --auto-gomemlimit does: the
// cgroup's memory limit, else the machine's memory. An explicit $GOMEMLIMIT
// wins. It returns the limit now in effect.
func setMemoryLimit(ratio float64, provider memlimit.Provider, logger *slog.Logger) (int64, error) {
	limit, err := memlimit.Set(
		memlimit.WithRatio(ratio),
		memlimit.WithProvider(provider),
		memlimit.WithLogger(logger),
	)
	if err != nil {
		return limit, fmt.Errorf("--auto-gomemlimit: %w", err)
	}
	return limit, nil
}

// containerMemory is the cgroup's memory limit, falling back to the
// machine's memory.
var containerMemory = memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)
