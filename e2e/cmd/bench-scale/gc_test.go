package main

import "testing"

func TestParseGC(t *testing.T) {
	log := `time=2026-12-01T10:00:00Z level=INFO msg=x
gc 12 @3.456s 1%: 0.022+1.2+0.013 ms clock, 0.044+0.5/1.0/2.0+0.026 ms cpu, 900->950->460 MB, 920 MB goal, 0 MB stacks, 0 MB globals, 2 P
gc 13 @63.1s 2%: 0.1+300+0.2 ms clock, 0.2+10/800/200+0.4 ms cpu, 920->960->470 MB, 940 MB goal, 1 MB stacks, 0 MB globals, 2 P (forced)
not gc 14 @1s`
	s := parseGC(log)
	if s.cycles != 2 || s.forced != 1 || s.liveMB != 470 || s.assist < 0.0105-1e-9 || s.assist > 0.0105+1e-9 {
		t.Fatalf("got %+v", s)
	}
	want := (0.044 + 0.5 + 1.0 + 2.0 + 0.026 + 0.2 + 10 + 800 + 200 + 0.4) / 1000
	if d := s.cpu - want; d > 1e-9 || d < -1e-9 {
		t.Fatalf("cpu %v, want %v", s.cpu, want)
	}
}
