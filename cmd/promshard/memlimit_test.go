package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
)

func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	logger := promslog.NewNopLogger()

	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("AUTOMEMLIMIT", "") // restored after the test
	require.NoError(t, os.Unsetenv("AUTOMEMLIMIT"))
	limit, err := setMemoryLimit(0.9, memlimit.Limit(1<<30), logger)
	require.NoError(t, err)
	require.Equal(t, int64(966367641), limit, "0.9 of a 1 GiB container, rounded down")
	require.Equal(t, limit, debug.SetMemoryLimit(-1), "the runtime's limit")

	// No limit anywhere: no soft limit either.
	limit, err = setMemoryLimit(0.9, func() (uint64, error) { return 0, memlimit.ErrNoLimit }, logger)
	require.NoError(t, err)
	require.Equal(t, int64(math.MaxInt64), limit)

	// An explicit GOMEMLIMIT wins.
	debug.SetMemoryLimit(123 << 20)
	t.Setenv("GOMEMLIMIT", "123MiB")
	limit, err = setMemoryLimit(0.9, memlimit.Limit(1<<30), logger)
	require.NoError(t, err)
	require.Equal(t, int64(123<<20), limit)
}
