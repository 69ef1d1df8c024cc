package replication

import (
	"context"
	"errors"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/logrec"
)

// WATCH on the leader.
//
// A Watch records the last LSN sequenced when it was made (its position)
// and, per key, whether the key was live then. The leader keeps, only for
// keys some Watch names, the LSN of the last entry that touched the key
// (watchCount.touched), updated as each entry is sequenced. StartTx runs
// a transaction only if, under the sequencing lock, atomically with
// building its entry, no watched key was touched after the position and
// no key that was live at the watch has since expired (Redis 7.0's rule:
// a key that expires between WATCH and EXEC fails the EXEC; one already
// expired at WATCH does not, nor does its deletion).
//
// What touches a key: any op of an entry on it (a command that changed
// nothing logs no op and touches nothing, as in Redis), except the
// deletion of a key that was not live (an expired key being reaped, a DEL
// of a stale key: logically no change); a FLUSHALL touches every watched
// key live before it. Expiry deletions are entries, so they touch too.
//
// A Watch belongs to one leadership (one Leader): a transaction under
// another (after a failover, or this node leading again) is refused,
// since the entries sequenced in between were not seen. Clients retry a
// failed EXEC, as they must in Redis.

// ErrWatchChanged: a key a transaction watched changed after its WATCH
// (or the Watch is from another leadership); the transaction did not run
// (EXEC answers a null array).
var ErrWatchChanged = errors.New("replication: a watched key changed")

// Watch is a connection's WATCH of some keys on one leadership.
type Watch struct {
	l    *Leader
	pos  uint64 // the last LSN sequenced before the watch
	keys []watchedKey
	// released is set by Release (under the leader's seqMu).
	released bool
}

type watchedKey struct {
	key  string
	live bool // the key existed and had not expired at the watch
}

// watchCount is the leader's record of one watched key (under seqMu).
type watchCount struct {
	refs    int    // Watches naming the key
	touched uint64 // LSN of the last entry that touched it since it is watched
}

// Watch watches keys for a transaction that StartTx will run. It is
// sequenced like a write that logs nothing: it returns once every entry
// sequenced before it is applied (and under a valid lease), so reads the
// client makes after WATCH see every change the Watch does not catch.
func (l *Leader) Watch(ctx context.Context, keys [][]byte) (*Watch, error) {
	var w *Watch
	p, err := l.Start(ctx, func(v commands.View, _ int64) (commands.Result, error) {
		w = &Watch{l: l, pos: v.NewVersion() - 1, keys: make([]watchedKey, 0, len(keys))}
		if l.watches == nil {
			l.watches = make(map[string]*watchCount)
		}
		for _, k := range keys {
			_, live, err := v.Get(k)
			if err != nil {
				w.releaseLocked()
				return commands.Result{}, err
			}
			key := string(k)
			c := l.watches[key]
			if c == nil {
				c = &watchCount{}
				l.watches[key] = c
			}
			c.refs++
			w.keys = append(w.keys, watchedKey{key: key, live: live})
		}
		return commands.Result{Reply: commands.OK}, nil
	})
	if err != nil {
		return nil, err
	}
	if _, _, err := p.Wait(ctx); err != nil {
		w.Release()
		return nil, err
	}
	return w, nil
}

// Release forgets the watch (UNWATCH, EXEC, DISCARD, a closed
// connection). It may be called more than once, also after the leader
// stopped.
func (w *Watch) Release() {
	if w == nil {
		return
	}
	w.l.seqMu.Lock()
	w.releaseLocked()
	w.l.seqMu.Unlock()
}

func (w *Watch) releaseLocked() {
	if w.released {
		return
	}
	w.released = true
	for _, k := range w.keys {
		c := w.l.watches[k.key]
		if c == nil {
			continue
		}
		if c.refs--; c.refs <= 0 {
			delete(w.l.watches, k.key)
		}
	}
}

// StartTx is Start for a transaction guarded by watches: exec runs only
// if every watch still holds when the entry is built, else StartTx fails
// with ErrWatchChanged and nothing is sequenced. The caller releases the
// watches afterwards.
func (l *Leader) StartTx(ctx context.Context, watches []*Watch, exec ExecFunc) (*Pending, error) {
	return l.Start(ctx, func(v commands.View, nowMs int64) (commands.Result, error) {
		ok, err := l.watchesHoldLocked(watches, v)
		if err != nil {
			return commands.Result{}, err
		}
		if !ok {
			return commands.Result{}, ErrWatchChanged
		}
		return exec(v, nowMs)
	})
}

// watchesHoldLocked reports whether no key of the watches changed since
// each was made, against v, the view the next entry is built on.
func (l *Leader) watchesHoldLocked(watches []*Watch, v commands.View) (bool, error) {
	for _, w := range watches {
		if w.l != l || w.released {
			return false, nil
		}
		for _, k := range w.keys {
			if c := l.watches[k.key]; c == nil || c.touched > w.pos {
				return false, nil
			}
			if !k.live {
				continue
			}
			// Live at the watch and untouched since: its expiry may
			// have passed (it is reaped by an entry that is not a touch).
			if _, live, err := v.Get([]byte(k.key)); err != nil {
				return false, err
			} else if !live {
				return false, nil
			}
		}
	}
	return true, nil
}

// touchWatchedLocked records that the entry lsn, whose ops are built on
// v (the view before it), touches the watched keys among its ops.
func (l *Leader) touchWatchedLocked(lsn uint64, ops []logrec.Op, v commands.View) error {
	if len(l.watches) == 0 {
		return nil
	}
	live := func(k []byte) (bool, error) {
		_, ok, err := v.Get(k)
		return ok, err
	}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case logrec.OpFlushAll:
			for k, c := range l.watches {
				if c.touched == lsn {
					continue
				}
				if ok, err := live([]byte(k)); err != nil {
					return err
				} else if ok {
					c.touched = lsn
				}
			}
		case logrec.OpDelete, logrec.OpDrop:
			c := l.watches[string(op.Key)]
			if c == nil || c.touched == lsn {
				continue
			}
			if ok, err := live(op.Key); err != nil {
				return err
			} else if ok {
				c.touched = lsn
			}
		case logrec.OpFunctions:
			// Not a key: the function libraries (WATCH cannot name them).
		default:
			if c := l.watches[string(op.Key)]; c != nil {
				c.touched = lsn
			}
		}
	}
	return nil
}

// WatchedKeys is how many keys some Watch names now (tests, metrics).
func (l *Leader) WatchedKeys() int {
	l.seqMu.Lock()
	defer l.seqMu.Unlock()
	return len(l.watches)
}
