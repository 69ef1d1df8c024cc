package node

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/resp"
)

// respCmd encodes one command as a RESP array.
func respCmd(args ...string) string {
	s := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	return s
}

// sendPipeline writes cmds in one write on a fresh connection and returns
// the first line of each reply (bulk replies: the line after the length).
func sendPipeline(t *testing.T, n *Node, cmds ...[]string) []string {
	t.Helper()
	c, err := net.Dial("tcp", n.respAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	for _, args := range cmds {
		b.WriteString(respCmd(args...))
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var out []string
	for range cmds {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", out, err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if strings.HasPrefix(line, "$") && line != "$-1" {
			if line, err = r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			line = strings.TrimSuffix(line, "\r\n")
		}
		out = append(out, line)
	}
	return out
}

// TestPipelineWritesAreOneEntry: a pipeline's consecutive writes are one
// log entry (resp.BatchBackend), each command seeing the ones before it,
// a command's error its own reply; a read in the pipeline sees the
// writes before it and splits the pipeline's writes in two entries; a
// follower gets the same keyspace.
func TestPipelineWritesAreOneEntry(t *testing.T) {
	leader := testNode(t, "l", nil)
	f := testNode(t, "f", nil)
	follow(t, f, leader)
	before := leader.db.Durable().LSN
	got := sendPipeline(t, leader,
		[]string{"SET", "a", "1"},
		[]string{"INCR", "a"},
		[]string{"HSET", "a", "f", "v"},
		[]string{"HSET", "h", "f", "v"},
		[]string{"SET", "b", "x"},
		[]string{"GET", "a"},
		[]string{"SET", "c", "3"},
		[]string{"DEL", "b", "h"},
		[]string{"INCR", "c"},
	)
	want := []string{"+OK", ":2", "-WRONGTYPE Operation against a key holding the wrong kind of value", ":1", "+OK", "2", "+OK", ":2", ":4"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("replies\n%q\nwant\n%q", got, want)
	}
	if n := leader.db.Durable().LSN - before; n != 2 {
		t.Errorf("the pipeline made %d log entries, want 2 (its writes before the GET, and after)", n)
	}
	got = sendPipeline(t, leader, []string{"WAIT", "1", "5000"}, []string{"GET", "a"}, []string{"EXISTS", "b", "h"}, []string{"GET", "c"})
	if strings.Join(got, "|") != ":1|2|:0|4" {
		t.Fatalf("after the pipeline: %q", got)
	}
	waitConverged(t, leader, []*Node{f})
	c := newClient(t, f)
	if v, err := c.Get(t.Context(), "c").Result(); err != nil || v != "4" {
		t.Fatalf("follower GET c = %q, %v", v, err)
	}
}

// TestPipelineTooLargeForOneEntry: a pipeline whose writes together pass
// the entry bound, each within it, is written command by command: each
// write is answered as if it were alone.
func TestPipelineTooLargeForOneEntry(t *testing.T) {
	leader := testNode(t, "l", func(c *Config) { c.MaxEntryBytes = 64 << 10 })
	big := strings.Repeat("x", 40<<10)
	got := sendPipeline(t, leader,
		[]string{"SET", "k1", big},
		[]string{"SET", "k2", big},
		[]string{"SET", "k3", strings.Repeat("y", 70<<10)},
		[]string{"STRLEN", "k2"},
	)
	if got[0] != "+OK" || got[1] != "+OK" || !strings.HasPrefix(got[2], "-ERR this write's log entry would be") || got[3] != fmt.Sprintf(":%d", len(big)) {
		t.Fatalf("replies %q", got)
	}
}

// TestPipelineBatchAllocsPerCommand: what a pipelined write costs in
// allocations beyond its batch's share, measured as the difference
// between a batch of 32 SETs and one of 16 on a lone async leader
// (everything a batch pays once — its proposal, entry, commit wait,
// fsync — cancels out). SubmitBatch hands resp one wait for the batch,
// not a closure per command: with one each this is a whole allocation
// more per command.
func TestPipelineBatchAllocsPerCommand(t *testing.T) {
	n := testNode(t, "l", nil)
	b := backend{n}
	set, _ := commands.Lookup([]byte("SET"))
	batch := func(size int) []resp.TxCommand {
		cmds := make([]resp.TxCommand, size)
		for i := range cmds {
			cmds[i] = resp.TxCommand{Spec: set, Args: [][]byte{[]byte("SET"), fmt.Appendf(nil, "key:%d", i), []byte("xxx")}}
		}
		return cmds
	}
	run := func(cmds []resp.TxCommand) {
		wait := b.SubmitBatch(context.Background(), cmds)
		for i := range cmds {
			if _, _, err := wait(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	small, big := batch(16), batch(32)
	run(small)
	run(big) // warm: the overlay's, the row cache's and the layers' maps
	perCmd := (testing.AllocsPerRun(200, func() { run(big) }) - testing.AllocsPerRun(200, func() { run(small) })) / 16
	t.Logf("%.2f allocations per pipelined SET beyond its batch's share", perCmd)
	// A SET's own: its op slice, its overlay row key, its row cache
	// entry, its reply's copy in the batch and what the batch's views
	// and ops grow by: 3.2 (4.2 with a closure per command).
	if perCmd > 3.8 {
		t.Errorf("%.2f allocations per pipelined SET beyond its batch's share, want at most 3.8", perCmd)
	}
}

// TestLoneWriteAllocs: a lone write answered through the write path
// (resp.ThenBackend, the c=50 SET's path) on a lone async leader, one at
// a time (a group of one each): its allocations per write, every one of
// the path's counted (the command's, the sequencing's, the log's, the
// apply's, the answer's). SubmitThen hands replication its error mapping
// (Pending.ThenMap) rather than a closure around the caller's callback,
// and a writer answered so makes no done channel: each was one more.
func TestLoneWriteAllocs(t *testing.T) {
	if raceDetector {
		t.Skip("the race detector's own allocations count too (21 here)")
	}
	n := testNode(t, "l", nil)
	b := backend{n}
	set, _ := commands.Lookup([]byte("SET"))
	args := [][]byte{[]byte("SET"), []byte("key"), []byte("xxx")}
	answered := make(chan error, 1)
	done := func(_ commands.Reply, _ uint64, err error) { answered <- err }
	write := func() {
		b.SubmitThen(context.Background(), set, args, done)
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		write()
	}
	perWrite := testing.AllocsPerRun(500, write)
	t.Logf("%.2f allocations per lone SET", perWrite)
	if perWrite > 18.5 {
		t.Errorf("%.2f allocations per lone SET, want at most 18.5", perWrite)
	}
}
