package failbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ack is one acknowledged write.
type Ack struct {
	Worker, Seq int
	// Invoked is when the write was sent, Acked when its OK arrived.
	Invoked, Acked time.Time
}

// Key is the key of the write (its value is Value(key, size)).
func Key(trial int, a Ack) string { return fmt.Sprintf("fb:%d:%d:%d", trial, a.Worker, a.Seq) }

// Value is the value written under key: the key, then '.' up to size bytes,
// so a value read back can be checked to be this write's.
func Value(key string, size int) string {
	if len(key) >= size {
		return key
	}
	return key + strings.Repeat(".", size-len(key))
}

// ErrKind is the kind of a failed write.
type ErrKind string

// The kinds of failed write the report counts.
const (
	ErrReadOnly ErrKind = "readonly" // -READONLY: a replica (or fenced node) refused the write
	ErrRefused  ErrKind = "refused"  // connection refused: nothing listens at the address
	ErrTimeout  ErrKind = "timeout"  // dial, read or write timed out
	ErrClosed   ErrKind = "closed"   // the connection was reset or closed under the write
	ErrOther    ErrKind = "other"
)

// errKinds is the order the report prints them in.
var errKinds = []ErrKind{ErrReadOnly, ErrRefused, ErrTimeout, ErrClosed, ErrOther}

// Classify names the kind of a write's error.
func Classify(err error) ErrKind {
	var ne net.Error
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "READONLY"):
		return ErrReadOnly
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		return ErrRefused
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) ||
		strings.Contains(msg, "i/o timeout"):
		return ErrTimeout
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe"):
		return ErrClosed
	}
	return ErrOther
}

// errorBackoff is how long a worker waits after a failed write before its
// next one: long enough not to spin on a dead address (each failover-client
// dial asks a sentinel), short against the seconds a failover takes.
const errorBackoff = 10 * time.Millisecond

// workload is one trial's writers.
type workload struct {
	trial     int
	valueSize int
	clients   []redis.UniversalClient
	stop      atomic.Bool
	wg        sync.WaitGroup
	workers   []*worker
	// killed is the kill time (UnixNano, 0 before the kill); firstNew is
	// closed at the first acknowledgement of a write invoked after it.
	killed       atomic.Int64
	firstNew     chan struct{}
	firstNewOnce sync.Once
}

type worker struct {
	acks    []Ack
	errs    map[ErrKind]int
	samples map[ErrKind]string // the first error message of each kind
}

// startWorkload starts one worker per client.
func startWorkload(trial, valueSize int, clients []redis.UniversalClient) *workload {
	w := &workload{trial: trial, valueSize: valueSize, clients: clients, firstNew: make(chan struct{})}
	for i := range clients {
		wk := &worker{errs: map[ErrKind]int{}, samples: map[ErrKind]string{}}
		w.workers = append(w.workers, wk)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(i, wk)
		}()
	}
	return w
}

func (w *workload) run(id int, wk *worker) {
	client := w.clients[id]
	ctx := context.Background() // the client's own timeouts bound each write
	for seq := 0; !w.stop.Load(); seq++ {
		a := Ack{Worker: id, Seq: seq}
		key := Key(w.trial, a)
		a.Invoked = time.Now()
		err := client.Set(ctx, key, Value(key, w.valueSize), 0).Err()
		if err != nil {
			k := Classify(err)
			wk.errs[k]++
			if _, ok := wk.samples[k]; !ok {
				wk.samples[k] = err.Error()
			}
			time.Sleep(errorBackoff)
			continue
		}
		a.Acked = time.Now()
		wk.acks = append(wk.acks, a)
		if k := w.killed.Load(); k != 0 && a.Invoked.UnixNano() >= k {
			w.firstNewOnce.Do(func() { close(w.firstNew) })
		}
	}
}

// markKill records the kill time.
func (w *workload) markKill(t time.Time) { w.killed.Store(t.UnixNano()) }

// finish stops the workers and returns their acknowledgements and errors.
func (w *workload) finish() ([]Ack, map[ErrKind]int, map[ErrKind]string) {
	w.stop.Store(true)
	w.wg.Wait()
	var acks []Ack
	errs := map[ErrKind]int{}
	samples := map[ErrKind]string{}
	for _, wk := range w.workers {
		acks = append(acks, wk.acks...)
		for k, n := range wk.errs {
			errs[k] += n
			if _, ok := samples[k]; !ok {
				samples[k] = wk.samples[k]
			}
		}
	}
	return acks, errs, samples
}

// readBackBatch is how many keys one MGET reads back.
const readBackBatch = 500

// ReadBack reads every acknowledged key of a trial from addr and returns the
// acknowledgements whose key is missing or holds another value.
func ReadBack(ctx context.Context, addr string, trial, valueSize int, acks []Ack) ([]Ack, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 3, ReadTimeout: 10 * time.Second})
	defer c.Close()
	var lost []Ack
	for lo := 0; lo < len(acks); lo += readBackBatch {
		batch := acks[lo:min(lo+readBackBatch, len(acks))]
		keys := make([]string, len(batch))
		for i, a := range batch {
			keys[i] = Key(trial, a)
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("failbench: read back from %s: %w", addr, err)
		}
		for i, v := range vals {
			if s, ok := v.(string); !ok || s != Value(keys[i], valueSize) {
				lost = append(lost, batch[i])
			}
		}
	}
	return lost, nil
}
