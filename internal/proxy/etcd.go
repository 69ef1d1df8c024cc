package proxy

import (
	"context"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
)

// FollowEtcd keeps the proxy's view on the cluster's topology in etcd
// until ctx ends: the watch gives the leader, the members their
// addresses. Members are read again when a watch says they changed, when
// the connection to etcd changes state (lost, back), and at least every
// membersEvery; while a read fails, the proxy serves on the last view it
// had and says so (INFO, /metrics, log). (A read every second cost the
// idle proxy and etcd a linearizable read a second for nothing.)
func (p *Proxy) FollowEtcd(ctx context.Context, store *coord.Store) {
	topo := store.WatchTopology(ctx)
	changed := store.WatchPrefixes(ctx, "members/")
	conn := store.WatchConn(ctx)
	every := p.membersEvery
	if every <= 0 {
		every = membersEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var (
		last    coord.Topology
		have    bool
		members []coord.Member
	)
	refresh := func() bool {
		p.etcdReads.Add(1)
		c, cancel := context.WithTimeout(ctx, time.Second)
		ms, err := store.Members(c)
		cancel()
		p.setEtcdErr(err)
		if err != nil {
			return false
		}
		members = ms
		return true
	}
	install := func() {
		v := View{Epoch: last.Epoch, Leader: last.Leader}
		for _, m := range members {
			v.Members = append(v.Members, Member{ID: m.ID, Addr: m.RESPAddr, Zone: m.Zone})
		}
		p.SetView(v)
	}
	reread := func() {
		if refresh() && have {
			install()
		}
	}
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
			refresh()
			install()
		case <-tick.C:
			reread()
		case <-changed:
			reread()
		case <-conn:
			reread()
		case <-ctx.Done():
			return
		}
	}
}

// membersEvery: FollowEtcd reads the members at least this often, besides
// when a watch or the connection's state says to; it also bounds how
// long a failure of etcd that the connection does not show (a member
// without a leader) goes unreported.
const membersEvery = 10 * time.Second

func (p *Proxy) setEtcdErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil && p.etcdErr == nil:
		p.etcdErr, p.etcdAt = err, time.Now()
		p.log.Warn("proxy: etcd unreachable; serving on the last topology known", "epoch", p.view.Epoch, "leader", p.view.Leader, "err", err)
	case err == nil && p.etcdErr != nil:
		p.log.Info("proxy: etcd reachable again", "after", time.Since(p.etcdAt).Round(time.Millisecond))
		p.etcdErr = nil
	}
}
