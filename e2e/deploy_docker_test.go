//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestDeployDockerfile checks the Dockerfile's stages and proves its
// ldflags stamp the version: the same go build with the Dockerfile's -X
// flags yields a binary whose --version prints the values.
func TestDeployDockerfile(t *testing.T) {
	root, err := testbed.RepoRoot()
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	var froms, users, entry []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, strings.Join(f[1:], " "))
			users = append(users, "") // USER is per stage
		case "USER":
			users[len(users)-1] = f[1]
		case "ENTRYPOINT":
			entry = append(entry, strings.Join(f[1:], " "))
		}
	}
	require.GreaterOrEqual(t, len(froms), 2, "multi-stage build")
	require.Regexp(t, `^golang:1\.\d+ AS builder$`, froms[0])
	require.Equal(t, "gcr.io/distroless/static-debian12:nonroot", froms[len(froms)-1])
	require.Equal(t, "65532:65532", users[len(users)-1], "final stage runs as nonroot")
	require.Equal(t, []string{`["/promshard"]`}, entry)
	require.Contains(t, text, "CGO_ENABLED=0", "distroless/static needs a static binary")

	// The builder's Go must be able to build go.mod's Go version.
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	goVer := regexp.MustCompile(`(?m)^go (1\.\d+)`).FindSubmatch(goMod)
	require.NotNil(t, goVer)
	require.Equal(t, "golang:"+string(goVer[1])+" AS builder", froms[0])

	// Build with the Dockerfile's -X flags, its variables set to known values.
	vars := map[string]string{"VERSION": "9.8.7-deploytest", "REVISION": "0123abcd", "BRANCH": "deploy-branch",
		"BUILD_USER": "tester", "BUILD_DATE": "20260101-00:00:00"}
	var ldflags []string
	for _, m := range regexp.MustCompile(`-X\s+(\S+)=\$\{(\w+)\}`).FindAllStringSubmatch(text, -1) {
		v, ok := vars[m[2]]
		require.True(t, ok, "unknown build variable %s", m[2])
		ldflags = append(ldflags, "-X", m[1]+"="+v)
	}
	require.Len(t, ldflags, 2*len(vars), "every -X flag of the Dockerfile")
	bin := filepath.Join(t.TempDir(), "promshard")
	// Without the Dockerfile's -trimpath and CGO_ENABLED=0, which would
	// recompile every package: -X only changes the link step.
	build := exec.Command("go", "build", "-ldflags", strings.Join(ldflags, " "), "-o", bin, "./cmd/promshard")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, v := range vars {
		require.Contains(t, string(out), v, "--version output")
	}
}
