package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://rw.example/api":                       "https://rw.example/api",
		"https://alice:s3cret@rw.example/api":          "https://alice:xxxxx@rw.example/api",
		"https://alice@rw.example/api":                 "https://alice@rw.example/api",
		"http://u:p@h:1/x and https://v:q@h2/y":        "http://u:xxxxx@h:1/x and https://v:xxxxx@h2/y",
		`invalid URL "ftp://a:b@x%zz": invalid escape`: `invalid URL "ftp://a:xxxxx@x%zz": invalid escape`,
		"no url here: a:b@c":                           "no url here: a:b@c",
	} {
		require.Equal(t, want, RedactURLs(in), in)
	}
}
