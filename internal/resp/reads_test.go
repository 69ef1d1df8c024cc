package resp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
)

// posFake is a fakeBackend with read policies: writes are at epoch 3, it
// records each ReadAt's request and answers with err when set.
type posFake struct {
	*fakeBackend
	pmu   sync.Mutex
	reqs  []ReadRequest
	users map[string]Position
	at    Position // what ReadAt reports
	err   error
}

func (p *posFake) ReadAt(ctx context.Context, spec *commands.Spec, args [][]byte, req ReadRequest) (commands.Reply, Position, error) {
	p.pmu.Lock()
	p.reqs = append(p.reqs, req)
	at, err := p.at, p.err
	p.pmu.Unlock()
	if err != nil {
		return nil, Position{}, err
	}
	reply, err := p.fakeBackend.Read(ctx, spec, args)
	return reply, at, err
}

func (p *posFake) Acknowledged(user string, lsn uint64) Position {
	pos := Position{Epoch: 3, LSN: lsn}
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if user != "" {
		p.users[user] = pos
	}
	return pos
}

func (p *posFake) lastReq() ReadRequest {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.reqs[len(p.reqs)-1]
}

func TestReadPolicyCommands(t *testing.T) {
	b := &posFake{fakeBackend: newFake(), users: map[string]Position{}}
	_, addr := startServer(t, b, Config{})
	c := newClient(t, addr, 2)
	ctx := context.Background()
	do := func(args ...any) string {
		t.Helper()
		v, err := c.Do(ctx, args...).Result()
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(v)
	}
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"tandem.readpolicy"}, "ryw"},
		{[]any{"tandem.token"}, "t1:0:0"},
		{[]any{"tandem.user"}, "error: redis: nil"},
		{[]any{"set", "k", "v"}, "OK"},
		{[]any{"tandem.token"}, "t1:3:1"},
		{[]any{"tandem.token", "t1:2:9"}, "OK"}, // lower: no change
		{[]any{"tandem.token"}, "t1:3:1"},
		{[]any{"tandem.token", "t1:4:2"}, "OK"},
		{[]any{"tandem.token"}, "t1:4:2"},
		{[]any{"tandem.token", "t2:4:2"}, "error: ERR tandem: malformed token 't2:4:2' (not a version-1 token); want t1:<epoch>:<lsn> as TANDEM.TOKEN answers it"},
		{[]any{"tandem.token", "t1:4"}, "error: ERR tandem: malformed token 't1:4' (no lsn); want t1:<epoch>:<lsn> as TANDEM.TOKEN answers it"},
		{[]any{"tandem.token", "t1:0:5"}, "error: ERR tandem: malformed token 't1:0:5' (epoch and lsn must be decimal, both 0 or neither); want t1:<epoch>:<lsn> as TANDEM.TOKEN answers it"},
		{[]any{"tandem.token", "t1:-1:5"}, "error: ERR tandem: malformed token 't1:-1:5' (epoch and lsn must be decimal, both 0 or neither); want t1:<epoch>:<lsn> as TANDEM.TOKEN answers it"},
		{[]any{"tandem.readpolicy", "bounded", "10"}, "OK"},
		{[]any{"tandem.readpolicy"}, "bounded 10"},
		{[]any{"tandem.readpolicy", "bounded"}, "error: ERR tandem: bounded takes the staleness in milliseconds"},
		{[]any{"tandem.readpolicy", "bounded", "0"}, "error: ERR tandem: bounded: the staleness must be a positive number of milliseconds"},
		{[]any{"tandem.readpolicy", "fast"}, `error: ERR tandem: unknown policy "fast"; want leader, any, bounded <ms>, ryw, monotonic or linearizable`},
		{[]any{"tandem.readpolicy", "any", "1"}, "error: ERR tandem: any takes no argument"},
		{[]any{"tandem.readpolicy", "MONOTONIC"}, "OK"},
		{[]any{"tandem.readpolicy"}, "monotonic"},
		{[]any{"tandem.user", "alice"}, "OK"},
		{[]any{"tandem.user"}, "alice"},
		{[]any{"tandem.user", ""}, "OK"},
		{[]any{"tandem.user"}, "error: redis: nil"},
		{[]any{"tandem.user", "alice"}, "OK"},
		{[]any{"tandem.token", "reset"}, "OK"},
		{[]any{"tandem.token"}, "t1:0:0"},
	} {
		if got := do(tc.args...); got != tc.want {
			t.Errorf("%v = %q, want %q", tc.args, got, tc.want)
		}
	}
	// A user's write is recorded for the user.
	do("set", "k", "w")
	if got := b.users["alice"]; got != (Position{3, 2}) {
		t.Errorf("alice's last write %v, want 3:2", got)
	}
	// RESET drops policy, positions and user.
	if got := do("reset"); got != "RESET" {
		t.Fatalf("RESET = %q", got)
	}
	for _, q := range []string{"tandem.readpolicy", "tandem.token", "tandem.user"} {
		if got, want := do(q), map[string]string{"tandem.readpolicy": "ryw", "tandem.token": "t1:0:0", "tandem.user": "error: redis: nil"}[q]; got != want {
			t.Errorf("after RESET %s = %q, want %q", q, got, want)
		}
	}
}

// TestReadFloors: each policy asks the Backend for its floor, and a read's
// position raises the token (monotonic) but not the write floor (ryw).
func TestReadFloors(t *testing.T) {
	b := &posFake{fakeBackend: newFake(), users: map[string]Position{}}
	_, addr := startServer(t, b, Config{})
	c := newClient(t, addr, 3)
	ctx := context.Background()
	must := func(args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil && err.Error() != "redis: nil" {
			t.Fatalf("%v: %v", args, err)
		}
	}
	must("tandem.user", "u1")
	must("set", "a", "1") // 3:1
	b.pmu.Lock()
	b.at = Position{Epoch: 3, LSN: 7} // reads are served at 3:7
	b.pmu.Unlock()
	for _, tc := range []struct {
		policy []any
		floor  Position
	}{
		{[]any{"ryw"}, Position{3, 1}},
		{[]any{"ryw"}, Position{3, 1}}, // the read at 3:7 is not a write
		{[]any{"monotonic"}, Position{3, 7}},
		{[]any{"linearizable"}, Position{3, 1}},
		{[]any{"any"}, Position{}},
		{[]any{"leader"}, Position{}},
		{[]any{"bounded", "10"}, Position{}},
	} {
		must(append([]any{"tandem.readpolicy"}, tc.policy...)...)
		must("get", "a")
		req := b.lastReq()
		if req.Floor != tc.floor || req.User != "u1" || !strings.HasPrefix(req.Policy.String(), tc.policy[0].(string)) {
			t.Errorf("policy %v: request %+v, want floor %v user u1", tc.policy, req, tc.floor)
		}
	}
	if req := b.lastReq(); req.Policy.Bound != 10*time.Millisecond {
		t.Errorf("bounded 10: bound %v", req.Policy.Bound)
	}
	if tok := c.Do(ctx, "tandem.token").Val(); tok != "t1:3:7" {
		t.Errorf("token after reading at 3:7 = %v, want t1:3:7", tok)
	}
}

func TestReadPolicyErrors(t *testing.T) {
	b := &posFake{fakeBackend: newFake(), users: map[string]Position{}}
	_, addr := startServer(t, b, Config{})
	c := newClient(t, addr, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("this node has not applied the position 3:9 within the read wait: %w", ErrReadElsewhere),
			"TRYAGAIN tandem: read elsewhere: this node has not applied the position 3:9 within the read wait"},
		{ErrReadElsewhere, "TRYAGAIN tandem: read elsewhere: this node cannot serve the session's read policy now"},
		{fmt.Errorf("position 2:12 (applied 3:40): %w", ErrPositionLost),
			"ERR tandem: the session's position is not in this cluster's history (lost in a failover under async commit, or never written): position 2:12 (applied 3:40); TANDEM.TOKEN RESET drops the session's positions"},
	} {
		b.pmu.Lock()
		b.err = tc.err
		b.pmu.Unlock()
		if err := c.Get(ctx, "k").Err(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: got %v, want %q", tc.err, err, tc.want)
		}
	}
	// A failed read does not move the token.
	if tok := c.Do(ctx, "tandem.token").Val(); tok != "t1:0:0" {
		t.Errorf("token = %v", tok)
	}
}

// posPipe is a posFake whose writes are submitted ahead as blockingPipe's.
type posPipe struct{ *posFake }

func (p posPipe) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	return blockingPipe{p.fakeBackend}.Submit(ctx, spec, args)
}

// TestTokenInPipelineDoesNotWaitForCommit: TANDEM.TOKEN and TANDEM.USER
// in a pipeline of writes (a proxy's runs: the user, writes, the token)
// do not hold back the writes after them until the ones before commit, so
// the whole pipeline shares commits; they still act in order: each write
// is recorded for the user in force when it was sent, and each token
// answers the writes before it.
func TestTokenInPipelineDoesNotWaitForCommit(t *testing.T) {
	b := &posFake{fakeBackend: newFake(), users: map[string]Position{}}
	_, addr, block := blockingServer(t, b.fakeBackend, posPipe{b})
	c := rawConn(t, addr)
	var buf []byte
	for _, cmd := range [][]string{
		{"TANDEM.USER", "u"}, {"SET", "a", "1"}, {"TANDEM.TOKEN"},
		{"TANDEM.USER", ""}, {"SET", "b", "2"}, {"TANDEM.TOKEN"},
		{"TANDEM.TOKEN", "RESET"}, {"TANDEM.TOKEN"},
	} {
		buf = append(buf, encode(cmd...)...)
	}
	c.write(t, string(buf))
	blockedIn(t, b.fakeBackend, "wait") // SET a's commit does not come yet
	b.mu.Lock()
	_, submitted := b.data["b"]
	b.mu.Unlock()
	if !submitted {
		t.Fatal("SET b was not submitted while SET a waited for its commit: TANDEM.TOKEN between them made it wait")
	}
	close(block)
	c.expect(t, "+OK", "+OK", "$6", "t1:3:1", "+OK", "+OK", "$6", "t1:3:2", "+OK", "$6", "t1:0:0")
	b.pmu.Lock()
	defer b.pmu.Unlock()
	if got := b.users["u"]; got != (Position{Epoch: 3, LSN: 1}) {
		t.Errorf("user u's last write recorded at %v, want 3:1 (SET b was sent after TANDEM.USER \"\")", got)
	}
}

// TestApplied: TANDEM.APPLIED answers the position a read would be
// served at, under policy any or, with LINEARIZABLE, linearizable with no
// floor and no user whatever the session's, and changes none of the
// session's state (a proxy's linearizable batches rest on both).
func TestApplied(t *testing.T) {
	b := &posFake{fakeBackend: newFake(), users: map[string]Position{}}
	_, addr := startServer(t, b, Config{})
	c := newClient(t, addr, 2)
	ctx := context.Background()
	for _, args := range [][]any{{"tandem.readpolicy", "monotonic"}, {"tandem.user", "u1"}, {"set", "a", "1"}} {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	b.pmu.Lock()
	b.at = Position{Epoch: 3, LSN: 7}
	b.pmu.Unlock()
	for _, tc := range []struct {
		args   []any
		policy string
	}{
		{[]any{"tandem.applied"}, "any"},
		{[]any{"TANDEM.APPLIED", "linearizable"}, "linearizable"},
	} {
		if got, err := c.Do(ctx, tc.args...).Result(); err != nil || got != "t1:3:7" {
			t.Errorf("%v = %v, %v; want t1:3:7", tc.args, got, err)
		}
		if req := b.lastReq(); req.Policy.String() != tc.policy || req.Floor != (Position{}) || req.User != "" {
			t.Errorf("%v: request %+v, want policy %s, no floor, no user", tc.args, req, tc.policy)
		}
	}
	for q, want := range map[string]string{"tandem.readpolicy": "monotonic", "tandem.token": "t1:3:1", "tandem.user": "u1"} {
		if got := c.Do(ctx, q).Val(); got != want {
			t.Errorf("after TANDEM.APPLIED %s = %v, want %s", q, got, want)
		}
	}
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"tandem.applied", "any"}, "ERR tandem: TANDEM.APPLIED takes no argument or LINEARIZABLE"},
		{[]any{"tandem.applied", "linearizable", "x"}, "ERR wrong number of arguments for 'tandem.applied' command"},
	} {
		if err := c.Do(ctx, tc.args...).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// A read the node cannot serve: its error, as a read's.
	b.pmu.Lock()
	b.err = fmt.Errorf("not applied: %w", ErrReadElsewhere)
	b.pmu.Unlock()
	if err := c.Do(ctx, "tandem.applied", "linearizable").Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN tandem: read elsewhere") {
		t.Errorf("refused: %v, want TRYAGAIN", err)
	}
}
