package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandemdb/tandem/internal/coord"
)

// DefaultFailoverTimeout is Options.FailoverTimeout's default.
const DefaultFailoverTimeout = 5 * time.Second

// Options configure a Client. Set Etcd or Addrs.
type Options struct {
	// Etcd are the endpoints of the control plane's etcd ("host:port" or
	// URLs). The client watches the topology there.
	Etcd []string
	// Cluster is the cluster's name in etcd; "" means "tandem".
	Cluster string
	// Addrs are nodes' RESP addresses, for a cluster reached without etcd:
	// the leader is found by asking them ROLE.
	Addrs []string

	// Redis is the template of the go-redis client: timeouts, pool size,
	// password, TLS, protocol... Addr is ignored (the client dials the
	// leader); a Dialer, if set, is used to dial the leader's address;
	// MaxRetries and DialerRetries are replaced by this package's policy.
	// nil means go-redis's defaults.
	Redis *redis.Options

	// FailoverTimeout bounds how long a command waits for a leader and is
	// retried after the first failure; 0 means DefaultFailoverTimeout.
	FailoverTimeout time.Duration
	// ProbeTimeout bounds one ROLE probe of a node (Addrs only); 0 means
	// 250 ms.
	ProbeTimeout time.Duration
	// Idempotent, if set, replaces IsIdempotent: it says which commands may
	// be retried after an error that leaves their outcome unknown.
	Idempotent func(args []any) bool
	// Logger gets leader changes (Info) and discovery failures (Warn);
	// nil means slog.Default().
	Logger *slog.Logger
}

// Client is a go-redis client of a tandem cluster's leader. Use it as a
// *redis.Client; see the package comment for what it retries.
type Client struct {
	*redis.Client

	opt  Options
	ro   redis.Options // the template, for the leader's dials and probes
	log  *slog.Logger
	view view
	kick chan struct{} // ask discovery to look again

	conns connSet
	reps  replicas // followers, for Session reads

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	etcd   *clientv3.Client
	closed sync.Once
}

var (
	_ redis.UniversalClient = (*Client)(nil)
	_ redis.Cmdable         = (*Client)(nil)
)

// New returns a client of the cluster that opt names. It does not wait for
// the network: commands wait for a leader (Options.FailoverTimeout at
// most), and WaitForLeader waits explicitly.
func New(opt Options) (*Client, error) {
	switch {
	case len(opt.Etcd) == 0 && len(opt.Addrs) == 0:
		return nil, errors.New("client: set Options.Etcd or Options.Addrs")
	case len(opt.Etcd) > 0 && len(opt.Addrs) > 0:
		return nil, errors.New("client: set Options.Etcd or Options.Addrs, not both")
	}
	if opt.Cluster == "" {
		opt.Cluster = "tandem"
	}
	if opt.FailoverTimeout <= 0 {
		opt.FailoverTimeout = DefaultFailoverTimeout
	}
	if opt.ProbeTimeout <= 0 {
		opt.ProbeTimeout = 250 * time.Millisecond
	}
	c := &Client{opt: opt, log: opt.Logger, kick: make(chan struct{}, 1)}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("cluster", opt.Cluster)
	if opt.Redis != nil {
		c.ro = *opt.Redis
	}
	c.view.init()
	c.ctx, c.cancel = context.WithCancel(context.Background())

	ro := c.ro
	ro.Addr = "tandem:" + opt.Cluster
	ro.Dialer = c.dial
	// This package retries; go-redis would resend anything on EOF.
	ro.MaxRetries = -1
	// The dialer waits for a leader itself (see dial).
	ro.DialerRetries = 1

	if len(opt.Etcd) > 0 {
		cli, err := coord.Dial(coord.ParseEndpoints(joinComma(opt.Etcd)))
		if err != nil {
			c.cancel()
			return nil, fmt.Errorf("client: %w", err)
		}
		c.etcd = cli
		store := coord.New(cli, opt.Cluster)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.watchEtcd(store)
		}()
	} else {
		p := newProber(c)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			p.run()
		}()
	}
	c.Client = redis.NewClient(&ro)
	c.Client.AddHook(hook{c})
	return c, nil
}

func joinComma(s []string) string {
	out := ""
	for i, e := range s {
		if i > 0 {
			out += ","
		}
		out += e
	}
	return out
}

// Close stops the watch and closes every connection.
func (c *Client) Close() error {
	var err error
	c.closed.Do(func() {
		c.cancel()
		c.wg.Wait()
		if c.etcd != nil {
			c.etcd.Close()
		}
		err = c.Client.Close()
		c.conns.closeAll()
		c.closeReplicas()
	})
	return err
}

// Leader is the leader the client sends commands to: its node id, RESP
// address and epoch (zeros when none is known). With Addrs only, id is the
// node's tandem_node_id and epoch its tandem_epoch, as INFO reports them.
func (c *Client) Leader() (id, addr string, epoch uint64) {
	l := c.view.leader()
	return l.id, l.addr, l.epoch
}

// WaitForLeader returns once a leader is known, or ctx's error.
func (c *Client) WaitForLeader(ctx context.Context) error {
	for n := 0; ; n++ {
		l, changed := c.view.get()
		if l.addr != "" {
			return nil
		}
		// A lookup that finds no leader changes nothing, so changed alone
		// would wait for ever once the request below was used up (with
		// Addrs, nothing else looks again): ask again after a backoff.
		c.lookAgain()
		t := time.NewTimer(backoff(n))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// lookAgain asks discovery to check the leader now (at most one request
// waits).
func (c *Client) lookAgain() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// leader is what the client knows of the leader.
type leader struct {
	id, addr string
	epoch    uint64
}

// view is the current leader, and a channel closed when it changes.
type view struct {
	mu      sync.Mutex
	cur     leader
	changed chan struct{}
}

func (v *view) init() { v.changed = make(chan struct{}) }

func (v *view) get() (leader, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cur, v.changed
}

func (v *view) leader() leader {
	l, _ := v.get()
	return l
}

// set replaces the leader; it reports whether the address changed.
func (v *view) set(l leader) (old leader, moved bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old = v.cur
	if l == old {
		return old, false
	}
	v.cur = l
	close(v.changed)
	v.changed = make(chan struct{})
	return old, l.addr != old.addr
}

func (v *view) stale(addr string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cur.addr != addr
}

// setLeader installs l, logs a change and retires the old leader's
// connections.
func (c *Client) setLeader(l leader) {
	old, moved := c.view.set(l)
	if old == l {
		return
	}
	c.log.Info("client: leader", "id", l.id, "addr", l.addr, "epoch", l.epoch, "was", old.addr)
	if moved {
		// Connections in use finish their request; those still open a
		// grace period later (a request to a paused node) are cut.
		time.AfterFunc(staleGrace, func() { c.conns.closeStale(&c.view) })
	}
}

// staleGrace is how long a connection to a former leader may stay open.
// A former leader answers nothing later than its fence delay (100 ms by
// default) after the epoch changed, so a request still waiting after
// that is waiting on a paused or cut-off node: cutting it frees its
// caller at once (its outcome stays unknown either way).
const staleGrace = 150 * time.Millisecond

// backoff is the pause before retry attempt n against an unchanged leader:
// 5 ms doubling to 100 ms, ±25%.
func backoff(n int) time.Duration {
	d := 5 * time.Millisecond << min(n, 5)
	d = min(d, 100*time.Millisecond)
	return d - d/4 + rand.N(d/2+1)
}

// await waits before attempt n of a command that failed while seen was the
// leader: not at all if another leader is known now, else until the leader
// changes or a backoff passes. It returns false if ctx ended or the
// deadline passed.
func (c *Client) await(ctx context.Context, seen leader, n int, deadline time.Time) bool {
	cur, changed := c.view.get()
	left := time.Until(deadline)
	if left <= 0 || ctx.Err() != nil {
		return false
	}
	if cur.addr != "" && cur.addr != seen.addr {
		return true
	}
	c.lookAgain()
	t := time.NewTimer(min(backoff(n), left))
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// retrier paces the retries of one command (or pipeline), which end
// FailoverTimeout after it started.
type retrier struct {
	n        int
	deadline time.Time
}

func (c *Client) newRetrier() *retrier {
	return &retrier{deadline: time.Now().Add(c.opt.FailoverTimeout)}
}

// deadlineKey carries a command's retry deadline to the dials it causes,
// so that a dial waiting for a leader does not outlast it.
type deadlineKey struct{}

func (r *retrier) within(ctx context.Context) context.Context {
	return context.WithValue(ctx, deadlineKey{}, r.deadline)
}

func (r *retrier) pause(ctx context.Context, c *Client, seen leader) bool {
	ok := c.await(ctx, seen, r.n, r.deadline)
	r.n++
	return ok
}

// dial is the go-redis Dialer: it connects to the leader of the moment. If
// none is known or it cannot be reached, it waits for the next one (up to
// FailoverTimeout or ctx) rather than failing, since the pool stops dialing
// for a second after PoolSize failed dials.
func (c *Client) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	deadline := time.Now().Add(c.opt.FailoverTimeout)
	if d, ok := ctx.Value(deadlineKey{}).(time.Time); ok && d.Before(deadline) {
		deadline = d
	}
	lastErr := ErrNoLeader
	var tried string
	for n := 0; ; n++ {
		l, changed := c.view.get()
		if l.addr != "" {
			nc, err := c.dialAddr(ctx, changed, network, l.addr)
			if err == nil {
				return c.conns.wrap(c, nc, l.addr), nil
			}
			lastErr, tried = err, l.addr
		}
		c.lookAgain()
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return nil, &DialError{Addr: tried, Err: lastErr}
		}
		t := time.NewTimer(min(backoff(n), left))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// dialAddr dials addr, giving up if the leader changes meanwhile.
func (c *Client) dialAddr(ctx context.Context, changed <-chan struct{}, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	if c.ro.Dialer != nil {
		return c.ro.Dialer(ctx, network, addr)
	}
	timeout := c.ro.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
	if c.ro.TLSConfig == nil {
		return d.DialContext(ctx, network, addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: c.ro.TLSConfig}
	return td.DialContext(ctx, network, addr)
}
