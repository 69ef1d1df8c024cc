package coord

import (
	"context"
	"testing"
	"time"
)

// TestFailoverPolicy: automatic until set, set and read back with an
// event, watched, and a stored value that does not parse is an error
// (never a silent automatic).
func TestFailoverPolicy(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, err := s.FailoverPolicy(ctx); err != nil || p != FailoverAutomatic {
		t.Fatalf("unset: %q %v", p, err)
	}
	w := s.WatchFailoverPolicy(ctx)
	next := func(want FailoverPolicy, wantErr bool) {
		t.Helper()
		select {
		case u := <-w:
			if u.Policy != want || (u.Err != nil) != wantErr {
				t.Fatalf("watch: %+v, want %q (error %v)", u, want, wantErr)
			}
		case <-ctx.Done():
			t.Fatalf("watch: nothing, want %q", want)
		}
	}
	next(FailoverAutomatic, false)
	old, err := s.SetFailoverPolicy(ctx, FailoverManual, "test")
	if err != nil || old != FailoverAutomatic {
		t.Fatalf("set manual: old %q %v", old, err)
	}
	next(FailoverManual, false)
	if p, err := s.FailoverPolicy(ctx); err != nil || p != FailoverManual {
		t.Fatalf("after set: %q %v", p, err)
	}
	evs, err := s.Events(ctx, 1)
	if err != nil || len(evs) != 1 || evs[0].Kind != "policy" || evs[0].Reason != "test" {
		t.Fatalf("event %+v %v", evs, err)
	}
	if _, err := s.SetFailoverPolicy(ctx, "sometimes", ""); err == nil {
		t.Fatal("an unknown policy was stored")
	}
	if _, err := s.Client().Put(ctx, s.Key("failover_policy"), `{"failover":"manaul"}`); err != nil {
		t.Fatal(err)
	}
	next("", true)
	if _, err := s.FailoverPolicy(ctx); err == nil {
		t.Fatal("a garbled policy read as valid")
	}
	if old, err := s.SetFailoverPolicy(ctx, FailoverAutomatic, "fix"); err != nil || old != `{"failover":"manaul"}` {
		t.Fatalf("replace the garbled value: old %q %v", old, err)
	}
	next(FailoverAutomatic, false)
	if _, err := s.Client().Delete(ctx, s.Key("failover_policy")); err != nil {
		t.Fatal(err)
	}
	next(FailoverAutomatic, false)
	for _, in := range []string{"automatic", "manual"} {
		if p, err := ParseFailoverPolicy(in); err != nil || string(p) != in {
			t.Errorf("parse %q: %q %v", in, p, err)
		}
	}
	for _, in := range []string{"", "Manual", "auto"} {
		if _, err := ParseFailoverPolicy(in); err == nil {
			t.Errorf("parse %q: no error", in)
		}
	}
}
