package commitbench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePgbenchLog(t *testing.T) {
	for _, tc := range []struct {
		name    string
		log     string
		lat     []time.Duration
		errors  int
		wantErr bool
	}{
		{name: "empty"},
		{
			name: "committed",
			log:  "0 0 1520 0 1764600000 123456\n1 0 2210 0 1764600000 124000\n0 1 980 0 1764600000 125100\n",
			lat:  []time.Duration{1520 * time.Microsecond, 2210 * time.Microsecond, 980 * time.Microsecond},
		},
		{
			// With --rate or --max-tries pgbench adds schedule lag and
			// retries after time_us.
			name: "extra columns",
			log:  "3 7 1500 0 1764600000 1000 12 0\n",
			lat:  []time.Duration{1500 * time.Microsecond},
		},
		{
			name:   "failed and skipped",
			log:    "0 0 1000 0 1764600000 1\n0 1 failed 0 1764600000 2\n\n1 0 skipped 0 1764600000 3\n",
			lat:    []time.Duration{1000 * time.Microsecond},
			errors: 2,
		},
		{name: "no trailing newline", log: "0 0 7 0 1764600000 1", lat: []time.Duration{7 * time.Microsecond}},
		{name: "short line", log: "0 0 1000 0\n", wantErr: true},
		{name: "bad latency", log: "0 0 1.5ms 0 1764600000 1\n", wantErr: true},
		{name: "negative latency", log: "0 0 -3 0 1764600000 1\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lat, errs, err := parsePgbenchLog(strings.NewReader(tc.log))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, latencies %v", lat)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lat, tc.lat) || errs != tc.errors {
				t.Errorf("got %v, %d errors; want %v, %d errors", lat, errs, tc.lat, tc.errors)
			}
		})
	}
}

func TestPgSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0:                       0,
		time.Millisecond:        1,
		time.Second:             1,
		time.Second + 1:         2,
		2500 * time.Millisecond: 3,
		10 * time.Second:        10,
	} {
		if got := pgSeconds(d); got != want {
			t.Errorf("pgSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestPgVersion(t *testing.T) {
	for out, want := range map[string]string{
		"postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n": "15.18 (Debian)",
		"postgres (PostgreSQL) 16.4\n":                           "16.4",
	} {
		if got := pgVersion(out); got != want {
			t.Errorf("pgVersion(%q) = %q, want %q", out, got, want)
		}
	}
}
