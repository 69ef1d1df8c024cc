package resp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// fakeBackend is an in-memory single node: a map run through the commands
// package, with switches for the error paths.
type fakeBackend struct {
	mu      sync.Mutex
	data    map[string]commands.Value
	lsn     uint64
	cursors *commands.CursorTable

	failWith error // returned by Read and Write when set
	// block, when set, makes Write (and Read with blockReads, and the
	// waits of blockingPipe) wait until it is closed or ctx ends. blocked,
	// when set, receives the call's name as it starts waiting, unblocked
	// why it stopped (nil: block was closed): a test knows the call is
	// blocked without sleeping.
	block      chan struct{}
	blockReads bool
	blocked    chan string
	unblocked  chan error
	waitLSNs   []uint64 // lsn argument of each Wait call
	replicas   int      // what a Wait that does not block returns
	// waitBlocks makes Wait block like a real one that no replica answers:
	// until its timeout (0: forever) or until ctx ends. waitStarted receives
	// when it starts blocking, waitEnded why it stopped (nil: the timeout)
	// then reports.
	waitBlocks  bool
	waitStarted chan struct{}
	waitEnded   chan error
	// waitIsBlockedCall makes a blocking Wait mark itself a blocked call
	// (BlockedCall), as BLPOP does, and record in watchedAtBlock whether
	// the connection's socket was watched as soon as it did.
	waitIsBlockedCall bool
	watchedAtBlock    bool
	replicaOf         []string
}

func newFake() *fakeBackend {
	return &fakeBackend{data: map[string]commands.Value{}, cursors: commands.NewCursorTable(64), replicas: 2}
}

type fakeView struct {
	b   *fakeBackend
	now int64
}

func (v fakeView) Get(key []byte) (commands.Value, bool, error) {
	val, ok := v.b.data[string(key)]
	if !ok || (val.ExpireAtMs != 0 && val.ExpireAtMs <= v.now) {
		return commands.Value{}, false, nil
	}
	return val, true, nil
}

func (v fakeView) Scan(start []byte, fn func([]byte, commands.Value) bool) error {
	keys := make([]string, 0, len(v.b.data))
	for k := range v.b.data {
		if k >= string(start) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if val, ok, _ := v.Get([]byte(k)); ok && !fn([]byte(k), val) {
			break
		}
	}
	return nil
}

// The fake holds strings only: no sub-key rows, and no version to create
// a collection with.
func (v fakeView) Sub([]byte, uint64, []byte) ([]byte, bool, error) { return nil, false, nil }
func (v fakeView) SubScan([]byte, uint64, []byte, func(sub, val []byte) bool) error {
	return nil
}
func (v fakeView) SubScanReverse([]byte, uint64, []byte, func(sub, val []byte) bool) error {
	return nil
}
func (v fakeView) Now() int64         { return v.now }
func (v fakeView) NewVersion() uint64 { return 0 }

// Rows is the fake's strings as package keyspace's rows.
func (v fakeView) Rows() keyspace.Rows {
	l := keyspace.NewLayer(keyspace.Empty{})
	for k, val := range v.b.data {
		l.Set(keyspace.MetaKey([]byte(k)), keyspace.AppendMetaRow(nil, val))
	}
	return l
}

func (b *fakeBackend) exec(spec *commands.Spec, args [][]byte) (commands.Result, error) {
	now := time.Now().UnixMilli()
	return spec.Exec(&commands.Ctx{NowMs: now, Cursors: b.cursors}, fakeView{b, now}, args)
}

// hold waits on block, reporting to blocked and unblocked when they are
// set.
func (b *fakeBackend) hold(ctx context.Context, name string, block chan struct{}) error {
	b.mu.Lock()
	blocked, unblocked := b.blocked, b.unblocked
	b.mu.Unlock()
	if blocked != nil {
		blocked <- name
	}
	var err error
	select {
	case <-block:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if unblocked != nil {
		unblocked <- err
	}
	return err
}

func (b *fakeBackend) Read(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, error) {
	b.mu.Lock()
	block := b.block
	if !b.blockReads {
		block = nil
	}
	b.mu.Unlock()
	if block != nil {
		if err := b.hold(ctx, "read", block); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failWith != nil {
		return nil, b.failWith
	}
	res, err := b.exec(spec, args)
	return res.Reply, err
}

func (b *fakeBackend) Write(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, uint64, error) {
	b.mu.Lock()
	block := b.block
	b.mu.Unlock()
	if block != nil {
		if err := b.hold(ctx, "write", block); err != nil {
			return nil, 0, err
		}
	}
	return b.apply(spec, args)
}

// apply runs a write at once.
func (b *fakeBackend) apply(spec *commands.Spec, args [][]byte) (commands.Reply, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failWith != nil {
		return nil, 0, b.failWith
	}
	res, err := b.exec(spec, args)
	if err != nil || len(res.Ops) == 0 {
		return res.Reply, 0, err
	}
	for _, op := range res.Ops {
		switch op.Kind {
		case logrec.OpDelete:
			delete(b.data, string(op.Key))
			continue
		case logrec.OpFlushAll:
			clear(b.data)
			continue
		case logrec.OpPut:
		default:
			panic(fmt.Sprintf("the fake backend holds strings only, not %v", op.Kind))
		}
		// Copy: the arguments belong to the connection's buffer.
		b.data[string(op.Key)] = commands.Value{Type: keyspace.TypeString, Data: append([]byte(nil), op.Value...), ExpireAtMs: op.ExpireAtMs}
	}
	b.lsn++
	return res.Reply, b.lsn, nil
}

// Info has a server section only, which names the sections asked for.
func (b *fakeBackend) Info(sections []string) string {
	if !slices.Contains(sections, "server") {
		return ""
	}
	return "# Server\r\nredis_version:7.0.0\r\nsections:" + strings.Join(sections, ",") + "\r\n\r\n"
}

func (b *fakeBackend) Role() commands.Reply {
	return commands.Array{commands.Bulk("master"), commands.Int(0), commands.Array{}}
}

func (b *fakeBackend) Wait(ctx context.Context, lsn uint64, n int, timeout time.Duration) int {
	b.mu.Lock()
	b.waitLSNs = append(b.waitLSNs, lsn)
	blocks, replicas := b.waitBlocks, b.replicas
	b.mu.Unlock()
	if !blocks {
		return replicas
	}
	var expired <-chan time.Time
	if timeout > 0 {
		expired = time.After(timeout)
	}
	if b.waitIsBlockedCall {
		_, done := BlockedCall(ctx)
		defer done()
		sess := ctx.Value(sessionKey{}).(*Session)
		b.mu.Lock()
		b.watchedAtBlock = sess.call.Load()&callWatched != 0
		b.mu.Unlock()
	}
	b.waitStarted <- struct{}{}
	select {
	case <-expired:
		b.waitEnded <- nil
	case <-ctx.Done():
		b.waitEnded <- ctx.Err()
	}
	return 0
}

func (b *fakeBackend) ReplicaOf(_ context.Context, host, port string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if host == "unreachable" {
		return errors.New("node: cannot reach unreachable:1")
	}
	b.replicaOf = append(b.replicaOf, host+":"+port)
	return nil
}

func (b *fakeBackend) ReplicaOfNoOne(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replicaOf = append(b.replicaOf, "no one")
	return nil
}

// Custom serves one tandem command, to test CustomBackend.
func (b *fakeBackend) Custom(_ context.Context, args [][]byte) (commands.Reply, bool, error) {
	switch strings.ToLower(string(args[0])) {
	case "tandem.lsn":
		b.mu.Lock()
		defer b.mu.Unlock()
		return commands.Int(b.lsn), true, nil
	case "tandem.fail":
		// An internal failure whose text must not reach the client.
		return nil, true, errors.New("storage: secret path /var/lib/x is corrupt")
	case "tandem.notleader":
		return nil, true, fmt.Errorf("fake: %w", ErrNotLeader)
	case "tandem.arity":
		return nil, true, &commands.ArityError{Name: "tandem.arity"}
	}
	return nil, false, nil
}

func (b *fakeBackend) set(f func(b *fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// startServer serves b on a loopback port until the test ends.
func startServer(t testing.TB, b Backend, cfg Config) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s := NewServer(cfg, b)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// pipeFake is a fakeBackend whose commits take commitDelay: Write waits
// for one commit per call, Submit orders the write at once and lets every
// write submitted within a commit interval share it, as group commit does.
type pipeFake struct {
	*fakeBackend
	commitDelay time.Duration
}

func (p *pipeFake) Write(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, uint64, error) {
	time.Sleep(p.commitDelay)
	return p.fakeBackend.Write(ctx, spec, args)
}

func (p *pipeFake) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	reply, lsn, err := p.fakeBackend.Write(ctx, spec, args) // ordered now
	committed := time.Now().Truncate(p.commitDelay).Add(p.commitDelay)
	return func() (commands.Reply, uint64, error) {
		time.Sleep(time.Until(committed))
		return reply, lsn, err
	}
}

// blockingPipe is a PipelineBackend whose Submit orders the write at once
// and whose wait, while the fake's block is set, waits on it like a
// commit that does not come.
type blockingPipe struct{ *fakeBackend }

func (p blockingPipe) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	p.mu.Lock()
	block := p.block
	p.mu.Unlock()
	reply, lsn, err := p.apply(spec, args) // ordered now
	return func() (commands.Reply, uint64, error) {
		if block != nil {
			if err := p.hold(ctx, "wait", block); err != nil {
				return nil, 0, err
			}
		}
		return reply, lsn, err
	}
}
