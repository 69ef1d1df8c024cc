package client

import (
	"context"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/coord"
)

// minLookAgain is the least time between two lookups that a failing
// command asked for.
const minLookAgain = 10 * time.Millisecond

// watchEtcd follows the topology in etcd until the client closes. A
// topology change resolves the leader's address at once; a request to look
// again (a refused dial or command) reads topology and members anew.
func (c *Client) watchEtcd(store *coord.Store) {
	topo := store.WatchTopology(c.ctx)
	var (
		last    coord.Topology
		have    bool
		members = map[string]coord.Member{}
		again   <-chan time.Time
		looked  time.Time
	)
	for {
		select {
		case t, ok := <-topo:
			if !ok {
				return
			}
			if have && t.Epoch < last.Epoch {
				continue
			}
			last, have = t, true
		case <-c.kick:
			if again == nil {
				again = time.After(time.Until(looked.Add(minLookAgain)))
			}
			continue
		case <-again:
			again = nil
			ctx, cancel := context.WithTimeout(c.ctx, time.Second)
			t, ok, err := store.Topology(ctx)
			cancel()
			if err != nil {
				c.log.Warn("client: read topology", "err", err)
			}
			if err != nil || !ok || (have && t.Epoch < last.Epoch) {
				looked = time.Now()
				continue
			}
			last, have = t, true
		case <-c.ctx.Done():
			return
		}
		looked = time.Now()
		c.resolve(store, last, members)
	}
}

// resolve installs t's leader, with its address from the members.
func (c *Client) resolve(store *coord.Store, t coord.Topology, members map[string]coord.Member) {
	if t.Leader == "" {
		c.setLeader(leader{epoch: t.Epoch})
		c.setReplicas(nil)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Second)
	ms, err := store.Members(ctx)
	cancel()
	if err != nil {
		c.log.Warn("client: read members", "err", err)
	}
	for _, m := range ms {
		members[m.ID] = m
	}
	m, ok := members[t.Leader]
	if !ok {
		c.log.Warn("client: the topology's leader is not a registered member", "leader", t.Leader, "epoch", t.Epoch)
	}
	var reps []string
	for id, o := range members {
		if id != t.Leader && o.RESPAddr != "" {
			reps = append(reps, o.RESPAddr)
		}
	}
	sort.Strings(reps)
	c.setReplicas(reps)
	c.setLeader(leader{id: t.Leader, addr: m.RESPAddr, epoch: t.Epoch})
}

// prober finds the leader among Options.Addrs by asking each node ROLE.
type prober struct {
	c     *Client
	nodes map[string]*redis.Client // by address; only run touches it
}

func newProber(c *Client) *prober {
	p := &prober{c: c, nodes: map[string]*redis.Client{}}
	for _, a := range c.opt.Addrs {
		p.node(a)
	}
	return p
}

func (p *prober) node(addr string) *redis.Client {
	if n, ok := p.nodes[addr]; ok {
		return n
	}
	ro := p.c.ro
	t := p.c.opt.ProbeTimeout
	n := redis.NewClient(&redis.Options{
		Addr: addr, Dialer: ro.Dialer, TLSConfig: ro.TLSConfig,
		Username: ro.Username, Password: ro.Password, CredentialsProvider: ro.CredentialsProvider,
		Protocol: 2, DisableIdentity: true,
		PoolSize: 1, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: t, ReadTimeout: t, WriteTimeout: t, PoolTimeout: t,
	})
	p.nodes[addr] = n
	return n
}

// run probes once, then again each time a command asks, at most every
// minLookAgain.
func (p *prober) run() {
	defer func() {
		for _, n := range p.nodes {
			n.Close()
		}
	}()
	for {
		start := time.Now()
		p.probe()
		select {
		case <-p.c.kick:
		case <-p.c.ctx.Done():
			return
		}
		t := time.NewTimer(time.Until(start.Add(minLookAgain)))
		select {
		case <-t.C:
		case <-p.c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// answer is one node's reply to a probe.
type answer struct {
	addr, role, id string
	epoch          uint64
	follows        string // a replica's leader
}

// probe asks every node (and every leader a replica names) and installs
// the master of the highest epoch, or no leader.
func (p *prober) probe() {
	asked := map[string]bool{}
	var best *answer
	var reps []string
	todo := p.c.opt.Addrs
	for len(todo) > 0 {
		answers := make([]answer, len(todo))
		var wg sync.WaitGroup
		for i, a := range todo {
			asked[a] = true
			n := p.node(a)
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = ask(p.c.ctx, n, a, p.c.opt.ProbeTimeout)
			}()
		}
		wg.Wait()
		todo = nil
		for i := range answers {
			a := &answers[i]
			switch a.role {
			case "master":
				if best == nil || a.epoch > best.epoch {
					best = a
				}
			case "slave":
				reps = append(reps, a.addr)
				if a.follows != "" && !asked[a.follows] {
					asked[a.follows] = true
					todo = append(todo, a.follows)
				}
			}
		}
	}
	if p.c.ctx.Err() != nil {
		return
	}
	sort.Strings(reps)
	p.c.setReplicas(reps)
	if best == nil {
		l := p.c.view.leader()
		p.c.setLeader(leader{epoch: l.epoch})
		return
	}
	p.c.setLeader(leader{id: best.id, addr: best.addr, epoch: best.epoch})
}

// ask sends ROLE and INFO to one node.
func ask(ctx context.Context, n *redis.Client, addr string, timeout time.Duration) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a := answer{addr: addr, id: addr}
	var role *redis.Cmd
	var info *redis.StringCmd
	_, _ = n.Pipelined(ctx, func(p redis.Pipeliner) error {
		role = p.Do(ctx, "ROLE")
		info = p.Info(ctx, "server", "replication")
		return nil
	})
	r, err := role.Slice()
	if err != nil || len(r) == 0 {
		return a
	}
	a.role, _ = r[0].(string)
	if a.role == "slave" && len(r) >= 3 {
		host, _ := r[1].(string)
		port, _ := r[2].(int64)
		if host != "" && port > 0 {
			a.follows = net.JoinHostPort(host, strconv.FormatInt(port, 10))
		}
	}
	if s, err := info.Result(); err == nil {
		for _, line := range strings.Split(s, "\r\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "tandem_epoch":
				a.epoch, _ = strconv.ParseUint(v, 10, 64)
			case "tandem_node_id":
				if v != "" {
					a.id = v
				}
			}
		}
	}
	return a
}
