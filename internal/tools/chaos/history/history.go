// Package history records what the chaos harness's clients and nemesis did:
// every operation with its invocation and completion time on one monotonic
// clock, its outcome, and the node that served it, plus every fault with the
// times it was injected and healed.
//
// The outcome is the contract the checkers rely on:
//   - OK: the node answered; the operation took effect (writes) or returned
//     what it observed (reads).
//   - Failed: the operation certainly did not take effect (the connection
//     was refused before the command was sent, or the node answered with an
//     error that means "not executed", such as READONLY or LOADING).
//   - Unknown: anything else, above all a timeout or a dropped connection.
//     The operation may have taken effect, at any time after its invocation,
//     even after the client gave up. Never record such an operation as
//     Failed: a checker would then call a legitimately applied write "a value
//     that was never written".
//
// A History is plain data and round-trips through JSON, so a failing run's
// history can be kept and checked again later.
package history

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind string

const (
	// Write is SET key value, with a value unique in the whole history.
	Write Kind = "write"
	// Read is GET key.
	Read Kind = "read"
	// Incr is INCR key.
	Incr Kind = "incr"

	// The typed workload's kinds (see package workload). A hash field is
	// a register: HSET and HGET are recorded as Write and Read of the key
	// "h:N/fM" (field fM of hash h:N).

	// SAdd is SADD key Value, a member unique in the whole history.
	SAdd Kind = "sadd"
	// SRead is SMEMBERS key; Items are the members returned (sorted).
	SRead Kind = "smembers"
	// RPush is RPUSH key Value, a value unique in the whole history.
	RPush Kind = "rpush"
	// LRead is LRANGE key 0 -1; Items are the elements in list order.
	LRead Kind = "lrange"
	// Transfer is MULTI, DECRBY From N, INCRBY To N, EXEC; Value names it
	// ("a:1->a:3"), N is the amount.
	Transfer Kind = "transfer"
	// Balances is MULTI, GET of every account, EXEC; Items are the
	// balances in account order ("" for an absent account).
	Balances Kind = "balances"
	// Accounts is the MSET that opens every account with its balance
	// before the workload starts; N is the total, the sum every Balances
	// must see.
	Accounts Kind = "accounts"
	// Enqueue is LPUSH key Value, a job unique in the whole history.
	Enqueue Kind = "lpush"
	// Dequeue is BRPOP key T, a blocking pop with a timeout T; Found and
	// Result are the job popped (a nil reply, the timeout, is OK and not
	// Found).
	Dequeue Kind = "brpop"
	// QueueRead is LRANGE key 0 -1 of the queue (the final read): Items
	// are the jobs still queued.
	QueueRead Kind = "queue"
)

// IsKV reports whether k is one of the register and counter kinds (Write,
// Read, Incr) that the linearizability, durability, follower-read and
// session checks model.
func IsKV(k Kind) bool { return k == Write || k == Read || k == Incr }

// Outcome is how an operation ended; see the package comment.
type Outcome string

// The outcomes.
const (
	OK      Outcome = "ok"
	Failed  Outcome = "failed"
	Unknown Outcome = "unknown"
)

// Op is one client operation.
type Op struct {
	// Client is the zero-based id of the client that issued the operation.
	// A client issues one operation at a time.
	Client int    `json:"client"`
	Key    string `json:"key"`
	Kind   Kind   `json:"kind"`
	// Value is the input of a Write.
	Value string `json:"value,omitempty"`
	// Found and Result are the output of an OK Read: whether the key
	// existed, and its value.
	Found  bool   `json:"found,omitempty"`
	Result string `json:"result,omitempty"`
	// N is the output of an OK Incr: the counter's new value; a
	// Transfer's amount; Accounts' total.
	N int64 `json:"n,omitempty"`
	// Items are the output of an OK SRead, LRead, Balances or QueueRead.
	Items   []string `json:"items,omitempty"`
	Outcome Outcome  `json:"outcome"`
	// Err is the error text of a Failed or Unknown operation.
	Err string `json:"err,omitempty"`
	// Node is the id of the node the operation was sent to.
	Node int `json:"node"`
	// Follower marks a read sent to a follower on purpose. Follower reads
	// may be stale, so they are checked for monotonicity and for values
	// never written, not for linearizability.
	Follower bool `json:"follower,omitempty"`
	// Policy is the read policy of a session's operation, in
	// TANDEM.READPOLICY's syntax ("ryw", "bounded 50", ...); empty for the
	// plain clients' operations. A session is one client id: its
	// operations are sequential and carry its position token from one
	// to the next (see workload). A session's read with Follower set was
	// served by a follower; a linearizable one is still checked for
	// linearizability.
	Policy string `json:"policy,omitempty"`
	// Proxy marks a session's operation sent through tandem proxy: Node
	// is 0 (the proxy chose the node), and a read has Follower set, since
	// a follower may have served it.
	Proxy bool `json:"proxy,omitempty"`
	// Final marks a read of the final phase, after every fault was healed
	// and the replicas converged; the durability check uses them.
	Final bool `json:"final,omitempty"`
	// Call and Return are nanoseconds since the history began, on a
	// monotonic clock. For an Unknown operation Return is when the client
	// gave up; the operation may still take effect later.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
}

// String describes the operation for reports.
func (o Op) String() string {
	var s string
	switch o.Kind {
	case Write:
		s = fmt.Sprintf("SET %s %s", o.Key, o.Value)
	case Read:
		s = "GET " + o.Key
		if o.Outcome == OK {
			if o.Found {
				s += " -> " + o.Result
			} else {
				s += " -> nil"
			}
		}
	case Incr:
		s = "INCR " + o.Key
		if o.Outcome == OK {
			s += fmt.Sprintf(" -> %d", o.N)
		}
	case SAdd, RPush, Enqueue:
		s = fmt.Sprintf("%s %s %s", strings.ToUpper(string(o.Kind)), o.Key, o.Value)
	case Dequeue:
		s = "BRPOP " + o.Key
		if o.Outcome == OK && o.Found {
			s += " -> " + o.Result
		} else if o.Outcome == OK {
			s += " -> nil"
		}
	case SRead, LRead, QueueRead:
		s = strings.ToUpper(string(o.Kind)) + " " + o.Key
		if o.Kind != SRead {
			s = "LRANGE " + o.Key + " 0 -1"
		}
		if o.Outcome == OK {
			s += " -> " + fmt.Sprint(o.Items)
		}
	case Transfer:
		s = fmt.Sprintf("TRANSFER %s %d", o.Value, o.N)
	case Balances:
		s = "BALANCES " + o.Key
		if o.Outcome == OK {
			s += " -> " + fmt.Sprint(o.Items)
		}
	case Accounts:
		s = fmt.Sprintf("MSET %s (total %d)", o.Key, o.N)
	}
	s += fmt.Sprintf(" [%s client=%d node=n%d %s..%s", o.Outcome, o.Client, o.Node,
		time.Duration(o.Call), time.Duration(o.Return))
	if o.Follower {
		s += " follower"
	}
	if o.Policy != "" {
		s += " policy=" + o.Policy
	}
	if o.Proxy {
		s += " proxy"
	}
	if o.Final {
		s += " final"
	}
	if o.Err != "" {
		s += " err=" + o.Err
	}
	return s + "]"
}

// FaultEvent is one fault the nemesis injected.
type FaultEvent struct {
	// Kind is the fault kind ("kill-leader", "partition", ...); Name says
	// which nodes it hit ("kill n1").
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Inject and Heal are nanoseconds since the history began, taken just
	// before the injection and just before the healing action started.
	// Heal is 0 while the fault is not healed.
	Inject    int64  `json:"inject"`
	Heal      int64  `json:"heal"`
	InjectErr string `json:"inject_err,omitempty"`
	HealErr   string `json:"heal_err,omitempty"`
	// Suspects are the nodes this fault may make look dead to the
	// control plane (the node it killed, paused or cut off from etcd): a
	// failover away from one of them while the fault holds, or shortly
	// after, is expected; a failover away from any other node is false.
	// Filled in at injection, once the fault's targets are known.
	Suspects []int `json:"suspects,omitempty"`
}

// CatchUp is what the harness saw of the followers after one healed
// fault: how long each took to apply what the leader had applied when the
// fault was healed (Target), waited for at most Within.
type CatchUp struct {
	// Fault is the fault's index in History.Faults.
	Fault int `json:"fault"`
	// Leader is the node that led as the wait began (0: none known: the
	// wait was not made) and Target its applied LSN then.
	Leader int    `json:"leader"`
	Target uint64 `json:"target"`
	// Within is how long the followers were given (ns).
	Within int64 `json:"within"`
	// Took is, per follower that reached Target, how long after the heal
	// it did (ns).
	Took map[int]int64 `json:"took,omitempty"`
	// Behind lists the followers that had not reached Target when the
	// wait ended, with the applied LSN they last showed (0 if they did
	// not answer).
	Behind map[int]uint64 `json:"behind,omitempty"`
	// Cut: the wait ended before Within because the next fault was
	// injected or the run was stopped; Behind then proves nothing.
	Cut bool `json:"cut,omitempty"`
}

// History is everything a run recorded.
type History struct {
	Seed uint64 `json:"seed"`
	// Start is the wall-clock time of the history's zero, so that times
	// other processes record (etcd events, log lines) can be placed on
	// the history's clock.
	Start  time.Time    `json:"start"`
	Ops    []Op         `json:"ops"`
	Faults []FaultEvent `json:"faults"`
	// CatchUps are the followers' catch-ups after each healed fault.
	CatchUps []CatchUp `json:"catch_ups,omitempty"`
}

// WriteFile stores h as JSON at path.
func (h History) WriteFile(path string) error {
	b, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return fmt.Errorf("history: encode: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// ReadFile loads a history that WriteFile stored.
func ReadFile(path string) (History, error) {
	var h History
	b, err := os.ReadFile(path)
	if err != nil {
		return h, fmt.Errorf("history: %w", err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("history: decode %s: %w", path, err)
	}
	return h, nil
}

// Recorder collects a history from concurrent clients and the nemesis. All
// times come from one monotonic clock that starts at NewRecorder.
type Recorder struct {
	start time.Time

	mu       sync.Mutex
	ops      []Op
	faults   []FaultEvent
	catchUps []CatchUp
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// At places a wall-clock time on the history's clock (nanoseconds since
// Start; negative before it).
func (h History) At(t time.Time) int64 { return int64(t.Sub(h.Start.Round(0))) }

// Now is the current time on the history's clock, in nanoseconds. It only
// moves forward (time.Since uses the monotonic clock).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add records a completed operation. Call it after the operation ended;
// op.Call must have been taken with Now before the operation was sent.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// AddFault records an injected fault and returns its index for Healed.
func (r *Recorder) AddFault(f FaultEvent) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, f)
	return len(r.faults) - 1
}

// Healed records that fault i was healed at time at, with err if the
// healing action failed.
func (r *Recorder) Healed(i int, at int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults[i].Heal = at
	if err != nil {
		r.faults[i].HealErr = err.Error()
	}
}

// Faults returns a copy of the faults recorded so far.
func (r *Recorder) Faults() []FaultEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.faults)
}

// AddCatchUp records the followers' catch-up after a healed fault.
func (r *Recorder) AddCatchUp(c CatchUp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.catchUps = append(r.catchUps, c)
}

// History returns a copy of what was recorded, operations sorted by
// invocation time.
func (r *Recorder) History(seed uint64) History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := History{Seed: seed, Start: r.start, Ops: slices.Clone(r.ops), Faults: slices.Clone(r.faults), CatchUps: slices.Clone(r.catchUps)}
	slices.SortStableFunc(h.Ops, func(a, b Op) int { return compare(a.Call, b.Call) })
	return h
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ByKey groups ops by key, keeping their order.
func ByKey(ops []Op) map[string][]Op {
	m := make(map[string][]Op)
	for _, o := range ops {
		m[o.Key] = append(m[o.Key], o)
	}
	return m
}

// IsCounter reports whether a key's operations make it a counter (it has
// INCRs) rather than a register. The workload never mixes SET and INCR on
// one key.
func IsCounter(ops []Op) bool {
	for _, o := range ops {
		if o.Kind == Incr {
			return true
		}
	}
	return false
}
