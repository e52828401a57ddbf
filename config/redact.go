package config

import "regexp"

// userinfoPassword matches "scheme://user:password@" anywhere in a text.
var userinfoPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^/?#@\s:"'<>]*):[^/?#@\s"'<>]*@`)

// RedactURLs replaces the password of every "scheme://user:password@" in
// text (an error message, a log line) with "xxxxx". Everything promshard
// prints that may hold a URL passes through it.
func RedactURLs(text string) string {
	return userinfoPassword.ReplaceAllString(text, "${1}:xxxxx@")
}
