package failbench

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// TestBulkLoad: every stream writes SET bulk:<n> with 100-byte values over
// its share of the key space and round again, and the load counts the
// replies, errors apart; it ends after its duration.
func TestBulkLoad(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		sets int
	)
	srv := redcon.NewServer(l.Addr().String(), func(conn redcon.Conn, cmd redcon.Command) {
		if len(cmd.Args) != 3 || strings.ToUpper(string(cmd.Args[0])) != "SET" || len(cmd.Args[2]) != bulkValueSize {
			conn.WriteError("ERR unexpected " + string(cmd.Raw))
			return
		}
		mu.Lock()
		seen[string(cmd.Args[1])]++
		sets++
		n := sets
		mu.Unlock()
		if n%10 == 0 {
			conn.WriteError("OOM command not allowed")
			return
		}
		conn.WriteString("OK")
	}, nil, nil)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })

	start := time.Now()
	st, err := bulkLoad(context.Background(), l.Addr().String(), 3, 30, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
		t.Fatalf("the load took %s, want its 300ms", el)
	}
	mu.Lock()
	defer mu.Unlock()
	if st.replies == 0 || st.replies > sets {
		t.Fatalf("%d replies counted for %d SETs", st.replies, sets)
	}
	if want := st.replies / 10; st.errors < want-3 || st.errors > want+3 {
		t.Fatalf("%d errors counted in %d replies, want every tenth", st.errors, st.replies)
	}
	if sets < 100 {
		t.Fatalf("only %d SETs in 300ms: the streams did not go round the keys", sets)
	}
	for k := range seen {
		n, err := strconv.Atoi(strings.TrimPrefix(k, "bulk:"))
		if err != nil || n < 0 || n >= 30 {
			t.Fatalf("key %q outside bulk:0..29", k)
		}
	}
	if len(seen) != 30 {
		t.Fatalf("%d keys written, want all 30", len(seen))
	}
}

// TestBulkLoadUnreachable: a leader that cannot be dialed is an error.
func TestBulkLoadUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := bulkLoad(context.Background(), addr, 2, 10, 100*time.Millisecond); err == nil {
		t.Fatal("no error from a load on a closed port")
	}
}
