package main

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "268435456": 256 << 20, "256mb": 256 << 20, "256MB": 256 << 20, "1gb": 1 << 30,
		"64kb": 64 << 10, "2g": 2e9, "5m": 5e6, "3k": 3000, "100b": 100, " 7 ": 7,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "mb", "-1", "1tb", "1.5gb", "99999999999gb"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
