// Package relay is a fault-injecting TCP relay for one network link. It
// listens on loopback and forwards every connection to a target address;
// the chaos harness points a node's peer address at a relay (through
// cluster.Config.PeerAddr) and then cuts, delays or black-holes the link.
//
// Promises:
//   - Pass: bytes are forwarded unchanged, in order, in both directions.
//   - Cut: every open connection is closed at once (both sides), and new
//     connections are accepted and closed immediately, so the dialer sees a
//     dead peer rather than a hang.
//   - Delay(d): every chunk is delivered d after the relay read it, in both
//     directions, in order.
//   - Drop(dir): bytes travelling in dir are read and discarded; the other
//     direction still flows. Connections stay open, as with a one-way
//     black hole in a real network.
//   - Heal: back to Pass. Connections that lost bytes while dropping are
//     closed, because their byte streams are no longer whole (a half-framed
//     gRPC stream would fail in confusing ways); the peers reconnect.
//   - Drop(dir) with Sticky (BlackHole): as Drop, but a connection that
//     lost bytes keeps losing every byte in dir for good, and is never
//     closed by the relay, as when a middlebox lost the flow's state or a
//     FIN was lost in a one-way partition: the peer that reads it hears
//     nothing, ever, unless it gives up on the connection itself.
//     Connections opened after the heal pass.
//
// A mode applies to bytes the relay reads after the change.
package relay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Direction is one way through the relay.
type Direction int

const (
	// Both is no particular direction (used by Mode: drop nothing).
	Both Direction = iota
	// Forward is from the dialer to the target.
	Forward
	// Backward is from the target back to the dialer.
	Backward
)

func (d Direction) String() string {
	switch d {
	case Forward:
		return "forward"
	case Backward:
		return "backward"
	}
	return "both"
}

// Mode is the relay's fault state. The zero Mode passes everything.
type Mode struct {
	Cut   bool
	Delay time.Duration
	// Drop discards bytes in this direction; Both drops nothing.
	Drop Direction
	// Sticky: the connections Drop took bytes from keep dropping them in
	// that direction after the mode changes (see BlackHole).
	Sticky bool
}

func (m Mode) String() string {
	switch {
	case m.Cut:
		return "cut"
	case m.Drop != Both && m.Sticky:
		return "black-hole " + m.Drop.String()
	case m.Drop != Both:
		return "drop " + m.Drop.String()
	case m.Delay > 0:
		return "delay " + m.Delay.String()
	}
	return "pass"
}

// Relay forwards connections from Addr to a target.
type Relay struct {
	target string
	ln     net.Listener
	log    *slog.Logger

	mu     sync.Mutex
	mode   Mode
	conns  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

// pair is one relayed connection: the dialer's side and the target's.
type pair struct {
	client, upstream net.Conn
	once             sync.Once
	// tainted is set (under Relay.mu) once bytes were dropped.
	tainted bool
	// dead is the direction a sticky drop took bytes from: every byte in
	// it is dropped from then on (under Relay.mu; Both: none).
	dead Direction
}

func (p *pair) close() {
	p.once.Do(func() {
		p.client.Close()
		p.upstream.Close()
	})
}

// Listen starts a relay on a free loopback port that forwards to target.
func Listen(target string, log *slog.Logger) (*Relay, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	r := &Relay{target: target, ln: ln, log: log.With("relay", ln.Addr().String(), "target", target), conns: map[*pair]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is where the relay listens; dial it instead of the target.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Target is the address the relay forwards to.
func (r *Relay) Target() string { return r.target }

// Mode returns the current mode.
func (r *Relay) Mode() Mode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}

// SetMode switches the relay to m. Entering Cut closes every connection;
// leaving a Drop mode closes the connections that lost bytes.
func (r *Relay) SetMode(m Mode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Info("relay mode", "mode", m.String())
	r.mode = m
	for p := range r.conns {
		if m.Cut || (m.Drop == Both && p.tainted && p.dead == Both) {
			delete(r.conns, p)
			p.close()
		}
	}
}

// Cut closes every connection and refuses new ones until healed.
func (r *Relay) Cut() { r.SetMode(Mode{Cut: true}) }

// Delay delays every byte by d in each direction.
func (r *Relay) Delay(d time.Duration) { r.SetMode(Mode{Delay: d}) }

// Drop discards the bytes travelling in dir.
func (r *Relay) Drop(dir Direction) { r.SetMode(Mode{Drop: dir}) }

// BlackHole discards the bytes travelling in dir, and on the connections
// it took bytes from goes on discarding them after the heal.
func (r *Relay) BlackHole(dir Direction) { r.SetMode(Mode{Drop: dir, Sticky: true}) }

// Heal returns to passing everything.
func (r *Relay) Heal() { r.SetMode(Mode{}) }

// Close stops the relay and closes every connection.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for p := range r.conns {
		p.close()
	}
	r.conns = map[*pair]struct{}{}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		r.mu.Lock()
		refuse := r.mode.Cut || r.closed
		r.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		r.wg.Add(1)
		go r.serve(c)
	}
}

func (r *Relay) serve(c net.Conn) {
	defer r.wg.Done()
	up, err := net.DialTimeout("tcp", r.target, 2*time.Second)
	if err != nil {
		r.log.Debug("relay dial failed", "err", err)
		c.Close()
		return
	}
	p := &pair{client: c, upstream: up}
	r.mu.Lock()
	// The mode may have changed to Cut while dialing.
	if r.mode.Cut || r.closed {
		r.mu.Unlock()
		p.close()
		return
	}
	r.conns[p] = struct{}{}
	r.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { r.pump(p, c, up, Forward) })
	wg.Go(func() { r.pump(p, up, c, Backward) })
	wg.Wait()
	r.mu.Lock()
	delete(r.conns, p)
	r.mu.Unlock()
}

// chunk is bytes read from one side, to be written to the other at a time.
type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst under the relay's mode. A reader goroutine stamps
// each chunk with its delivery time; this goroutine writes them in order,
// so delays keep the stream's order. Either side failing closes the pair.
func (r *Relay) pump(p *pair, src, dst net.Conn, dir Direction) {
	defer p.close()
	queue := make(chan chunk, 1024)
	go func() {
		defer close(queue)
		// One read buffer per direction; each chunk copies only what was
		// read, so an idle or chatty link (etcd's keepalives, heartbeats)
		// costs bytes, not 32 KiB a read.
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				r.mu.Lock()
				m := r.mode
				if m.Drop == dir {
					p.tainted = true
					if m.Sticky {
						p.dead = dir
					}
				}
				drop := m.Drop == dir || p.dead == dir
				r.mu.Unlock()
				if !drop {
					queue <- chunk{data: append([]byte(nil), buf[:n]...), at: time.Now().Add(m.Delay)}
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					r.log.Debug("relay read", "dir", dir.String(), "err", err)
				}
				return
			}
		}
	}()
	for c := range queue {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.data); err != nil {
			p.close()
			for range queue { // let the reader finish
			}
			return
		}
	}
}
