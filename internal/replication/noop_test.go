package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// noOpBlocked is how long a write that logs nothing is given to show
// that it waits: it is answered at once (no fsync, no group commit) or
// never until a follower connects, so a short window is not a race.
const noOpBlocked = 100 * time.Millisecond

// startNoOp sequences exec, which must log nothing, and returns its
// Pending with the core waits it asked for so far.
func startNoOp(t *testing.T, l *testLeader, exec ExecFunc) *Pending {
	t.Helper()
	p, err := l.Start(context.Background(), exec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if p.p != nil {
		t.Fatalf("the command logged ops; this test needs one that logs nothing")
	}
	return p
}

// waitsWithin waits for p for d and reports whether it was answered,
// failing on any error but a deadline.
func waitsWithin(t *testing.T, p *Pending, d time.Duration) (commands.Reply, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, lsn, err := p.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, false
	}
	if err != nil || lsn != 0 {
		t.Fatalf("no-op Wait: lsn %d, %v", lsn, err)
	}
	return r, true
}

// TestNoOpOfCommittedKeysDoesNotWait: a write that logs nothing and read
// only committed keys is answered at once, with no wait of the core,
// however many writes to other keys are in flight and never commit (a
// quorum leader without followers); the planted plantNoOpWaitsAll (wait
// for every entry before it, as before) fails it, by the waits it counts.
func TestNoOpOfCommittedKeysDoesNotWait(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	// Committed collections of every kind the no-ops read.
	propose(t, l, cmdExec("sadd", "set", "a"))
	propose(t, l, cmdExec("zadd", "zset", "1", "a"))
	propose(t, l, cmdExec("rpush", "list", "a", "b"))
	l.SetMode(commit.Mode{Kind: commit.Quorum, K: 1}) // nothing commits from here on
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	inFlight := []<-chan proposeResult{
		proposeAsync(ctx, l, putExec("k", "v")),
		proposeAsync(ctx, l, cmdExec("sadd", "other", "x")),
	}
	waitFor(t, "the writes to be sequenced", func() (bool, string) {
		st := l.Status()
		return st.InFlight == 2, fmt.Sprintf("%+v", st)
	})
	// And writes that only grow or shrink the set the SADD and SREM
	// below read, by other members (redis-benchmark's SADD: a member
	// already there among new ones): those read only its shape and their
	// own members' rows.
	for i, args := range [][]string{{"sadd", "set", "b", "c"}, {"sadd", "set", "d"}, {"srem", "set", "c"}} {
		inFlight = append(inFlight, proposeAsync(ctx, l, cmdExec(args...)))
		waitFor(t, "the writes to be sequenced", func() (bool, string) {
			st := l.Status()
			return st.InFlight == 3+i, fmt.Sprintf("%+v", st)
		})
	}
	for _, args := range [][]string{
		{"sadd", "set", "a"},                     // a member already there
		{"srem", "set", "zz"},                    // no such member
		{"zadd", "zset", "1", "a"},               // same score
		{"zrem", "zset", "zz"},                   // no such member
		{"lrem", "list", "0", "zz"},              // nothing to remove (list rows)
		{"spop", "missing"},                      // a drained key
		{"zpopmin", "missing"},                   // a drained key
		{"lpop", "missing"},                      // a drained key
		{"srem", "missing", "a"},                 // a key never written
		{"linsert", "list", "before", "zz", "x"}, // no pivot
	} {
		p, err := l.Start(context.Background(), cmdExec(args...))
		if err != nil {
			t.Fatalf("%v: Start: %v", args, err)
		}
		if p.p != nil {
			t.Fatalf("%v logged ops", args)
		}
		waits := l.handoffs.wait.Load()
		// Answered at once: 5 s is only a bound for the failure.
		if _, ok := waitsWithin(t, p, 5*time.Second); !ok {
			t.Fatalf("%v: not answered though it read only committed keys", args)
		}
		if n := l.handoffs.wait.Load() - waits; n != 0 {
			t.Errorf("%v: waited for the core %d times, want 0 (it read only committed keys)", args, n)
		}
	}
	for _, ch := range inFlight {
		select {
		case r := <-ch:
			t.Fatalf("a write committed without a follower: %+v", r)
		default:
		}
	}
}

// TestNoOpWaitsForWhatItRead: a write that logs nothing and read a key an
// entry in flight wrote (its own connection's pipelined write, another
// client's, a FLUSHALL's) is not answered until that entry is applied,
// whichever way it read it: View reads by key, sub-key scans, the rows
// under the view (list commands), a scan of the keyspace. The planted
// plantNoOpEarly fails it.
func TestNoOpWaitsForWhatItRead(t *testing.T) {
	for _, c := range []struct {
		name  string
		write ExecFunc
		noop  ExecFunc
		want  commands.Reply
	}{
		{"get", putExec("k", "v"), func(v commands.View, _ int64) (commands.Result, error) {
			val, ok, err := v.Get([]byte("k"))
			if err != nil || !ok {
				return commands.Result{Reply: commands.Null}, err
			}
			return commands.Result{Reply: commands.Bulk(val.Data)}, nil
		}, commands.Bulk("v")},
		{"sadd", cmdExec("sadd", "s", "a"), cmdExec("sadd", "s", "a"), commands.Int(0)},
		{"srem", cmdExec("sadd", "s", "a"), cmdExec("srem", "s", "zz"), commands.Int(0)},
		// The member read was added by the write in flight, to a set
		// that was there: the set's shape did not change, the row did.
		{"sadd member", cmdExec("sadd", "committed", "b"), cmdExec("sadd", "committed", "b"), commands.Int(0)},
		// The set's expiry changed (its size did not): the committed
		// set may be expired by now.
		{"sadd expiry", cmdExec("pexpire", "committed", "100000"), cmdExec("sadd", "committed", "a"), commands.Int(0)},
		{"srem expiry", cmdExec("pexpire", "committed", "100000"), cmdExec("srem", "committed", "zz"), commands.Int(0)},
		// The set was dropped and made again in flight.
		{"sadd remade", func(v commands.View, now int64) (commands.Result, error) {
			r, err := cmdExec("del", "committed")(v, now)
			if err != nil {
				return r, err
			}
			r2, err := cmdExec("sadd", "zzz", "a")(v, now) // another key: the entry's second op on a key is fine
			r.Ops = append(r.Ops, r2.Ops...)
			return r, err
		}, cmdExec("srem", "committed", "a"), commands.Int(0)},
		{"zadd", cmdExec("zadd", "z", "1", "a"), cmdExec("zadd", "z", "1", "a"), commands.Int(0)},
		{"spop drained", cmdExec("spop", "committed"), cmdExec("spop", "committed"), commands.Null},
		{"lrem", cmdExec("rpush", "l", "a"), cmdExec("lrem", "l", "0", "zz"), commands.Int(0)},
		{"flushall", func(commands.View, int64) (commands.Result, error) {
			return commands.Result{Reply: commands.OK, Ops: []logrec.Op{{Kind: logrec.OpFlushAll}}}, nil
		}, cmdExec("srem", "committed", "zz"), commands.Int(0)},
		{"rows get", putExec("k", "v"), func(v commands.View, _ int64) (commands.Result, error) {
			// As a transaction or a pipeline reads, through the rows.
			_, ok, err := v.Rows().Get(keyspace.MetaKey([]byte("k")))
			return commands.Result{Reply: commands.Int(b2i(ok))}, err
		}, commands.Int(1)},
		{"rows iter", cmdExec("sadd", "s", "a"), func(v commands.View, _ int64) (commands.Result, error) {
			// The version of the set the pending SADD makes is its
			// LSN, the one before this command's.
			n := 0
			lo, hi := keyspace.SubSpan([]byte("s"), v.NewVersion()-1)
			err := v.Rows().Iter(lo, hi, func(_, _ []byte) bool { n++; return true })
			return commands.Result{Reply: commands.Int(int64(n))}, err
		}, commands.Int(1)},
		{"scan", putExec("k", "v"), func(v commands.View, _ int64) (commands.Result, error) {
			n := 0
			err := v.Scan(nil, func([]byte, commands.Value) bool { n++; return true })
			return commands.Result{Reply: commands.Int(int64(n))}, err
		}, commands.Int(2)},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
			// A committed set, with a follower that then leaves: every
			// write after it waits until one comes back.
			f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
			propose(t, l, cmdExec("sadd", "committed", "a"))
			f.stop(t)
			// The same caller's write, then its no-op, as a
			// connection's pipeline starts them.
			w, err := l.Start(context.Background(), c.write)
			if err != nil {
				t.Fatalf("Start write: %v", err)
			}
			p := startNoOp(t, l, c.noop)
			if r, ok := waitsWithin(t, p, noOpBlocked); ok {
				t.Fatalf("answered %v before the entry it read was applied", r)
			}
			f.start(t, l.dialer)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if _, _, err := w.Wait(ctx); err != nil {
				t.Fatalf("write: %v", err)
			}
			r, ok := waitsWithin(t, p, waitTimeout)
			if !ok {
				t.Fatalf("not answered once the entry it read was applied")
			}
			if fmt.Sprint(r) != fmt.Sprint(c.want) {
				t.Errorf("reply %v, want %v", r, c.want)
			}
		})
	}
}

// TestNoOpKeysForgotten: once every entry is applied, the overlay keeps
// no key's last LSN (a key left behind would be a leak under a long
// write load, and would make a later no-op wait for nothing).
func TestNoOpKeysForgotten(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	for i := range 50 {
		propose(t, l, cmdExec("sadd", fmt.Sprintf("s%d", i%7), fmt.Sprint(i)))
		propose(t, l, putExec(fmt.Sprintf("k%d", i%5), "v"))
	}
	waitFor(t, "every entry applied", func() (bool, string) {
		l.seqMu.Lock()
		defer l.seqMu.Unlock()
		n := len(l.overlay.k.keys)
		return n == 0, fmt.Sprintf("%d keys kept", n)
	})
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// TestErrorReplyWaitsForWhatItRead: a command whose own error reply says
// what an entry in flight wrote (an INCR of a string SET just before, a
// set command on that string) is answered, as a no-op's reply is, only
// once that entry is applied: a failover could still lose the entry, and
// the client would have been told of a value that never was. An error
// that read nothing pending is answered at once.
func TestErrorReplyWaitsForWhatItRead(t *testing.T) {
	for _, c := range []struct {
		name    string
		command ExecFunc
		want    string
	}{
		{"incr", cmdExec("incr", "k"), "not an integer"},
		{"wrongtype", cmdExec("sadd", "k", "a"), "WRONGTYPE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
			f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
			propose(t, l, cmdExec("set", "committed", "abc"))
			f.stop(t) // every write after this waits until it comes back
			w, err := l.Start(context.Background(), cmdExec("set", "k", "abc"))
			if err != nil {
				t.Fatalf("Start write: %v", err)
			}
			p, err := l.Start(context.Background(), c.command)
			if err != nil {
				t.Fatalf("Start answered %v at once, from an entry in flight", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), noOpBlocked)
			_, _, err = p.Wait(ctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("answered %v before the entry it read was applied", err)
			}
			// On a committed string: answered at once, with no wait.
			q, err := l.Start(context.Background(), cmdExec("incr", "committed"))
			if err != nil {
				t.Fatalf("Start on a committed key: %v", err)
			}
			if !q.seen {
				t.Errorf("an error on a committed key waits for the core")
			}
			f.start(t, l.dialer)
			ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if _, _, err := w.Wait(ctx); err != nil {
				t.Fatalf("write: %v", err)
			}
			// The error comes as the command made it: an error return
			// (INCR) or an error reply (WRONGTYPE).
			r, _, err := p.Wait(ctx)
			if e, ok := r.(commands.ErrorReply); ok && err == nil {
				err = errors.New(string(e))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("reply %v, %v, want the command's error (%s)", r, err, c.want)
			}
		})
	}
}
