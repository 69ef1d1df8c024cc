package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// BenchmarkProxyGet measures the proxy's own cost per request: clients
// send GET one at a time (redis-benchmark -P 1) through a proxy with
// policy leader to a node that answers at once (a bare redcon server), so
// allocs/op and CPU per op are the proxy's (and the clients' and node's,
// the same with or without changes to the proxy).
func BenchmarkProxyGet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := redcon.NewServer(ln.Addr().String(), func(c redcon.Conn, cmd redcon.Command) {
		c.WriteBulkString("value")
	}, nil, nil)
	go srv.Serve(ln)
	defer srv.Close()
	p := New(Config{Policy: Policy{Kind: resp.PolicyLeader}, Logger: slog.New(slog.DiscardHandler)})
	p.SetView(View{Epoch: 1, Leader: "n1", Members: []Member{{ID: "n1", Addr: ln.Addr().String()}}})
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(pl)
	defer p.Close()
	const clients = 50
	conns := make([]net.Conn, clients)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", pl.Addr().String()); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}
	req := []byte("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
	const reply = "$5\r\nvalue\r\n"
	work := make(chan struct{}, 1024)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for _, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReader(nc)
			got := make([]byte, len(reply))
			for range work {
				if _, err := nc.Write(req); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(r, got); err != nil || string(got) != reply {
					b.Errorf("reply %q, %v", got, err)
					return
				}
			}
		}()
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
}

// BenchmarkProxyReadPolicies: the proxy's cost per read under policy any
// (a bare GET to the follower) and ryw with a floor the follower is known
// to have applied (proved: the read alone, and a share of a proof per
// write of the read connection; upstream.go), clients sending one GET at a time
// to a follower that answers at once (a bare redcon server). cpu-ns/op is
// the process's CPU per read (proxy, clients and the fake node alike, the
// same for every policy but for the commands it parses); allocs/op is
// the proxy's (and clients').
func BenchmarkProxyReadPolicies(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := redcon.NewServer(ln.Addr().String(), func(c redcon.Conn, cmd redcon.Command) {
		switch {
		case strings.EqualFold(string(cmd.Args[0]), "tandem.readpolicy"):
			c.WriteBulkString("ryw")
		case strings.EqualFold(string(cmd.Args[0]), "tandem.token") && len(cmd.Args) == 1,
			strings.EqualFold(string(cmd.Args[0]), "tandem.applied"):
			c.WriteBulkString("t1:1:1")
		case strings.EqualFold(string(cmd.Args[0]), "tandem.token"):
			c.WriteString("OK")
		default:
			c.WriteBulkString("value")
		}
	}, nil, nil)
	go srv.Serve(ln)
	defer srv.Close()
	for _, pol := range []resp.PolicyKind{resp.PolicyAny, resp.PolicyRYW} {
		b.Run(Policy{Kind: pol}.String(), func(b *testing.B) {
			p := New(Config{Policy: Policy{Kind: pol}, Logger: slog.New(slog.DiscardHandler)})
			p.SetView(View{Epoch: 1, Leader: "n1", Members: []Member{{ID: "n1", Addr: ln.Addr().String()}, {ID: "n2", Addr: ln.Addr().String()}}})
			for _, n := range p.nodes {
				for n.positions.Load() == 0 {
					runtime.Gosched()
				}
			}
			pl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go p.Serve(pl)
			defer p.Close()
			const clients = 50
			conns := make([]net.Conn, clients)
			for i := range conns {
				if conns[i], err = net.Dial("tcp", pl.Addr().String()); err != nil {
					b.Fatal(err)
				}
				defer conns[i].Close()
			}
			req := []byte("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
			const reply = "$5\r\nvalue\r\n"
			work := make(chan struct{}, 1024)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for _, nc := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := bufio.NewReader(nc)
					got := make([]byte, len(reply))
					for range work {
						if _, err := nc.Write(req); err != nil {
							b.Error(err)
							return
						}
						if _, err := io.ReadFull(r, got); err != nil || string(got) != reply {
							b.Errorf("reply %q, %v", got, err)
							return
						}
					}
				}()
			}
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			if s := p.stats; pol == resp.PolicyRYW && (s.readsFloorKnown.Load() < uint64(b.N) || s.readsFloorUnproven.Load() > 0) {
				b.Fatalf("%d of %d reads in the known form, %d unproven", s.readsFloorKnown.Load(), b.N, s.readsFloorUnproven.Load())
			}
			if pol == resp.PolicyRYW {
				b.ReportMetric(float64(p.stats.readsFloorKnown.Load())/float64(max(p.stats.readProofs.Load(), 1)), "reads/proof")
			}
		})
	}
}

// processCPU is the process's CPU time so far (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
