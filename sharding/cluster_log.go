package sharding

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// memberlistLogWriter is the io.Writer behind memberlist's *log.Logger. It
// turns lines such as "[DEBUG] memberlist: Stream connection from=..." into
// slog records at the matching level.
type memberlistLogWriter struct {
	logger *slog.Logger
}

// Write logs one or more newline-separated memberlist log lines.
func (w *memberlistLogWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		w.logLine(strings.TrimSpace(string(line)))
	}
	return len(p), nil
}

func (w *memberlistLogWriter) logLine(line string) {
	if line == "" {
		return
	}
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			level = parseLevel(line[1:end])
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.logger.Log(context.Background(), level, "Memberlist", "detail", line)
}

func parseLevel(s string) slog.Level {
	switch strings.ToUpper(s) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERR", "ERROR":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
