package pubsub

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"testing"
)

// rec is a Subscriber that records what it was handed, as strings: in
// queued until it is woken, then in got (what its client was sent).
type rec struct {
	mu     sync.Mutex
	queued []string
	got    []string
	wakes  int
}

func (r *rec) Deliver(m *Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf("message %s %s", m.Channel, m.Payload)
	if m.IsPattern {
		s = fmt.Sprintf("pmessage %s %s %s", m.Pattern, m.Channel, m.Payload)
	}
	r.queued = append(r.queued, s)
	return len(r.queued) == 1
}

func (r *rec) Wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wakes++
	r.got = append(r.got, r.queued...)
	r.queued = nil
}

func TestPublishOncePerSubscription(t *testing.T) {
	r := New()
	a, b := &rec{}, &rec{}
	if !r.Subscribe(a, "news.art") || r.Subscribe(a, "news.art") {
		t.Fatal("Subscribe: want true, then false for the same channel")
	}
	r.PSubscribe(a, "news.*")
	r.PSubscribe(a, "n*")
	r.PSubscribe(b, "news.*")
	r.Subscribe(b, "other")
	if n := r.Publish([]byte("news.art"), []byte("hi")); n != 4 {
		t.Fatalf("Publish: %d receivers, want 4 (a: channel + 2 patterns, b: 1 pattern)", n)
	}
	sort.Strings(a.got[1:]) // patterns come after the channel, in no given order among themselves
	want := []string{"message news.art hi", "pmessage n* news.art hi", "pmessage news.* news.art hi"}
	if !reflect.DeepEqual(a.got, want) {
		t.Errorf("a got %q, want %q", a.got, want)
	}
	if want := []string{"pmessage news.* news.art hi"}; !reflect.DeepEqual(b.got, want) {
		t.Errorf("b got %q, want %q", b.got, want)
	}
	if n := r.Receivers([]byte("news.art")); n != 4 {
		t.Errorf("Receivers = %d, want 4", n)
	}
	if got := r.Channels(nil, true); !reflect.DeepEqual(got, []string{"news.art", "other"}) {
		t.Errorf("Channels = %q", got)
	}
	if got := r.Channels([]byte("o*"), false); !reflect.DeepEqual(got, []string{"other"}) {
		t.Errorf("Channels(o*) = %q", got)
	}
	if r.NumPat() != 2 || r.NumSub("news.art") != 1 || r.NumSub("none") != 0 {
		t.Errorf("NumPat %d NumSub %d", r.NumPat(), r.NumSub("news.art"))
	}
	if !r.PUnsubscribe(b, "news.*") || r.PUnsubscribe(b, "news.*") || r.NumPat() != 2 {
		t.Error("PUnsubscribe: want true, then false; a still holds news.*")
	}
}

// TestRegistryAgainstModel runs random subscribe, unsubscribe and publish
// operations and checks each subscriber's deliveries and every count
// against a naive model: a list of subscriptions matched one by one.
func TestRegistryAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0))
		r := New()
		subs := []*rec{{}, {}, {}, {}}
		type sub struct {
			s       int
			pattern bool
			name    string
		}
		var model []sub
		want := make([][]string, len(subs))
		names := []string{"a", "b", "ab", "ba", "a.b", "[ab]", "*", "a*", "?b", "a\\*", "a*"}
		channels := []string{"a", "b", "ab", "ba", "a.b", "a*", "bb", ""}
		find := func(x sub) int {
			for i, m := range model {
				if m == x {
					return i
				}
			}
			return -1
		}
		for step := 0; step < 400; step++ {
			i := rnd.IntN(len(subs))
			x := sub{s: i, pattern: rnd.IntN(2) == 0, name: names[rnd.IntN(len(names))]}
			switch rnd.IntN(3) {
			case 0:
				var ok bool
				if x.pattern {
					ok = r.PSubscribe(subs[i], x.name)
				} else {
					ok = r.Subscribe(subs[i], x.name)
				}
				if ok != (find(x) < 0) {
					t.Fatalf("seed %d step %d: subscribe %+v = %v", seed, step, x, ok)
				}
				if ok {
					model = append(model, x)
				}
			case 1:
				var ok bool
				if x.pattern {
					ok = r.PUnsubscribe(subs[i], x.name)
				} else {
					ok = r.Unsubscribe(subs[i], x.name)
				}
				j := find(x)
				if ok != (j >= 0) {
					t.Fatalf("seed %d step %d: unsubscribe %+v = %v", seed, step, x, ok)
				}
				if ok {
					model = append(model[:j], model[j+1:]...)
				}
			case 2:
				ch := channels[rnd.IntN(len(channels))]
				payload := fmt.Sprint(step)
				n := 0
				for _, m := range model {
					switch {
					case !m.pattern && m.name == ch:
						want[m.s] = append(want[m.s], fmt.Sprintf("message %s %s", ch, payload))
						n++
					case m.pattern && naiveMatch(m.name, ch):
						want[m.s] = append(want[m.s], fmt.Sprintf("pmessage %s %s %s", m.name, ch, payload))
						n++
					}
				}
				if got := r.Receivers([]byte(ch)); got != n {
					t.Fatalf("seed %d step %d: Receivers(%q) = %d, want %d", seed, step, ch, got, n)
				}
				if got := r.Publish([]byte(ch), []byte(payload)); got != n {
					t.Fatalf("seed %d step %d: Publish(%q) = %d, want %d", seed, step, ch, got, n)
				}
			}
		}
		for i, s := range subs {
			// Within one Publish the order among a subscriber's patterns
			// is not given; across Publish calls it is.
			if !sameByPublish(s.got, want[i]) {
				t.Fatalf("seed %d: subscriber %d got %q, want %q", seed, i, s.got, want[i])
			}
		}
		pats := map[string]bool{}
		for _, m := range model {
			if m.pattern {
				pats[m.name] = true
			}
		}
		if r.NumPat() != len(pats) {
			t.Fatalf("seed %d: NumPat %d, want %d", seed, r.NumPat(), len(pats))
		}
	}
}

// sameByPublish: the same deliveries, in the same order of publishes (the
// payload is the publish's step), any order within one publish.
func sameByPublish(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	key := func(s []string) []string {
		out := append([]string(nil), s...)
		sort.SliceStable(out, func(i, j int) bool { return step(out[i]) < step(out[j]) })
		return out
	}
	g, w := key(got), key(want)
	for i := range g {
		if step(g[i]) != step(got[i]) { // got was not in publish order
			return false
		}
	}
	sort.Strings(g)
	sort.Strings(w)
	return reflect.DeepEqual(g, w)
}

// step is a delivery's payload, the step that published it.
func step(s string) int {
	n, err := strconv.Atoi(s[lastSpace(s)+1:])
	if err != nil {
		panic(err)
	}
	return n
}

func lastSpace(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ' ' {
			return i
		}
	}
	return -1
}

// naiveMatch is a glob for the model: '*', '?', '[ab]' and '\' escapes
// only, by recursion (independent of commands.Match's loop).
func naiveMatch(pat, s string) bool {
	if pat == "" {
		return s == ""
	}
	switch pat[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if naiveMatch(pat[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && naiveMatch(pat[1:], s[1:])
	case '[':
		end := 1
		for end < len(pat) && pat[end] != ']' {
			end++
		}
		if s == "" {
			return false
		}
		for _, c := range []byte(pat[1:end]) {
			if c == s[0] {
				return naiveMatch(pat[end+1:], s[1:])
			}
		}
		return false
	case '\\':
		if len(pat) > 1 {
			return s != "" && s[0] == pat[1] && naiveMatch(pat[2:], s[1:])
		}
	}
	return s != "" && s[0] == pat[0] && naiveMatch(pat[1:], s[1:])
}

// TestPublishHeldWakesOncePerBatch: messages published held reach no
// client until WakeHeld, which wakes each subscriber they were queued for
// once, all of them in order; Publish wakes at once.
func TestPublishHeldWakesOncePerBatch(t *testing.T) {
	r := New()
	a, b, c, idle := &rec{}, &rec{}, &rec{}, &rec{}
	r.Subscribe(a, "ch")
	r.PSubscribe(b, "c*")
	r.SSubscribe(c, "ch")
	r.Subscribe(idle, "other")
	for i := range 3 {
		if n := r.PublishHeld([]byte("ch"), []byte(strconv.Itoa(i))); n != 2 {
			t.Fatalf("PublishHeld: %d receivers, want 2", n)
		}
		if n := r.SPublishHeld([]byte("ch"), []byte(strconv.Itoa(i))); n != 1 {
			t.Fatalf("SPublishHeld: %d receivers, want 1", n)
		}
	}
	for _, s := range []*rec{a, b, c} {
		if len(s.got) != 0 || s.wakes != 0 {
			t.Fatalf("before WakeHeld: sent %q after %d wake-ups, want none", s.got, s.wakes)
		}
	}
	r.WakeHeld()
	want := map[*rec][]string{
		a: {"message ch 0", "message ch 1", "message ch 2"},
		b: {"pmessage c* ch 0", "pmessage c* ch 1", "pmessage c* ch 2"},
		c: {"message ch 0", "message ch 1", "message ch 2"},
	}
	for s, w := range want {
		if !reflect.DeepEqual(s.got, w) || s.wakes != 1 {
			t.Errorf("after WakeHeld: sent %q after %d wake-ups, want %q after 1", s.got, s.wakes, w)
		}
	}
	if idle.wakes != 0 {
		t.Errorf("a subscriber of another channel was woken %d times", idle.wakes)
	}
	r.WakeHeld() // nothing held: no wake-up
	if a.wakes != 1 {
		t.Errorf("WakeHeld with nothing held woke a again (%d wake-ups)", a.wakes)
	}
	r.Publish([]byte("ch"), []byte("now"))
	if a.wakes != 2 || a.got[len(a.got)-1] != "message ch now" {
		t.Errorf("Publish: sent %q after %d wake-ups, want it sent at once", a.got, a.wakes)
	}
}
