package client

import (
	"net"
	"sync"
	"syscall"
)

// connSet holds the open connections, so that those to a former leader
// can be closed.
type connSet struct {
	mu sync.Mutex
	m  map[*conn]struct{}
}

// wrap makes nc, a connection to addr, one of the set's. A TCP connection
// keeps its syscall.Conn, through which go-redis's pool checks an idle
// connection's health before reuse: a stale one fails the check.
func (s *connSet) wrap(c *Client, nc net.Conn, addr string) net.Conn {
	cn := &conn{Conn: nc, set: s, view: &c.view, addr: addr}
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*conn]struct{})
	}
	s.m[cn] = struct{}{}
	s.mu.Unlock()
	if sc, ok := nc.(syscall.Conn); ok {
		return &sysConn{conn: cn, sc: sc}
	}
	return cn
}

func (s *connSet) remove(cn *conn) {
	s.mu.Lock()
	delete(s.m, cn)
	s.mu.Unlock()
}

// closeStale closes the connections to any node but v's leader.
func (s *connSet) closeStale(v *view) {
	s.mu.Lock()
	var stale []*conn
	for cn := range s.m {
		if v.stale(cn.addr) {
			stale = append(stale, cn)
		}
	}
	s.mu.Unlock()
	for _, cn := range stale {
		cn.Close()
	}
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	all := make([]*conn, 0, len(s.m))
	for cn := range s.m {
		all = append(all, cn)
	}
	s.mu.Unlock()
	for _, cn := range all {
		cn.Close()
	}
}

// conn is a connection to the node that was the leader when it was
// dialed. Once that node is no longer the leader the connection refuses to
// start a request, so the request is known not to have been sent.
//
// go-redis uses a connection from one goroutine at a time and finishes
// writing a request (or pipeline) before it reads the replies, so a write
// after a read starts a new request.
type conn struct {
	net.Conn
	set  *connSet
	view *view
	addr string
	// sending: bytes of a request were written since the last read.
	sending bool
}

func (cn *conn) Write(b []byte) (int, error) {
	if !cn.sending && cn.view.stale(cn.addr) {
		return 0, &notSentError{errStale}
	}
	n, err := cn.Conn.Write(b)
	if err != nil && n == 0 && !cn.sending {
		return 0, &notSentError{err}
	}
	if n > 0 {
		cn.sending = true
	}
	return n, err
}

func (cn *conn) Read(b []byte) (int, error) {
	n, err := cn.Conn.Read(b)
	if n > 0 {
		cn.sending = false
	}
	return n, err
}

func (cn *conn) Close() error {
	cn.set.remove(cn)
	return cn.Conn.Close()
}

// sysConn is a conn over a connection with a file descriptor.
type sysConn struct {
	*conn
	sc syscall.Conn
}

// SyscallConn is what go-redis's pool health check peeks through: a
// connection to a former leader fails it and is dropped, not reused.
func (s *sysConn) SyscallConn() (syscall.RawConn, error) {
	if s.view.stale(s.addr) {
		return nil, errStale
	}
	return s.sc.SyscallConn()
}
