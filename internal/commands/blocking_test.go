package commands

import (
	"errors"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  error
	}{
		{"0", 0, nil},
		{"1", time.Second, nil},
		{"0.001", time.Millisecond, nil},
		{"0.0001", 0, nil}, // truncated to 0 ms: forever, as in Redis
		{"-0.0001", 0, nil},
		{"1.5e1", 15 * time.Second, nil},
		{"-1", 0, errTimeoutNegative},
		{"abc", 0, errTimeoutNotFloat},
		{"", 0, errTimeoutNotFloat},
		{" 1", 0, errTimeoutNotFloat},
		{"nan", 0, errTimeoutNotFloat},
		{"inf", 0, errTimeoutRange},
		{"1e300", 0, errTimeoutRange},
	} {
		got, err := parseTimeout([]byte(tc.in))
		if !errors.Is(err, tc.err) || (err == nil && got != tc.want) {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestBlockArgs(t *testing.T) {
	b := func(s ...string) [][]byte {
		out := make([][]byte, len(s))
		for i, x := range s {
			out[i] = []byte(x)
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		keys []string
		err  error
	}{
		{[]string{"blpop", "a", "b", "0"}, []string{"a", "b"}, nil},
		{[]string{"brpop", "a", "x"}, nil, errTimeoutNotFloat},
		{[]string{"blmove", "s", "d", "left", "right", "1"}, []string{"s"}, nil},
		{[]string{"blmove", "s", "d", "up", "right", "1"}, nil, ErrSyntax},
		{[]string{"brpoplpush", "s", "d", "-1"}, nil, errTimeoutNegative},
		{[]string{"blmpop", "0", "2", "a", "b", "left", "count", "3"}, []string{"a", "b"}, nil},
		{[]string{"blmpop", "0", "0", "a", "left"}, nil, errNumkeys},
		{[]string{"blmpop", "0", "3", "a", "left"}, nil, ErrSyntax},
		{[]string{"blmpop", "0", "1", "a", "left", "count", "0"}, nil, errCountPositive},
	} {
		spec, ok := Lookup([]byte(tc.args[0]))
		if !ok || spec.Block == nil {
			t.Fatalf("%s: not a blocking command", tc.args[0])
		}
		got, err := spec.Block(b(tc.args...))
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: err %v, want %v", tc.args, err, tc.err)
			continue
		}
		if err == nil && string(joinKeys(got.Keys)) != string(joinKeys(b(tc.keys...))) {
			t.Errorf("%v: keys %q, want %q", tc.args, got.Keys, tc.keys)
		}
	}
}

func joinKeys(ks [][]byte) []byte {
	var out []byte
	for _, k := range ks {
		out = append(append(out, k...), 0)
	}
	return out
}
