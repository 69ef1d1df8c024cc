package storage_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// cmdTarget runs commands as a node does: a write against the rows with
// the entry's LSN as NewVersion, its ops applied; a read against the
// rows. Replies are what the client gets (an input error as its text).
type cmdTarget struct {
	t     *testing.T
	rows  func() keyspace.Rows
	apply func(lsn uint64, ops []logrec.Op)
	lsn   uint64
}

const cmdNow = 1_700_000_000_000

func (c *cmdTarget) do(args ...string) any {
	c.t.Helper()
	raw := make([][]byte, len(args))
	for i, a := range args {
		raw[i] = []byte(a)
	}
	spec, ok := commands.Lookup(raw[0])
	if !ok {
		c.t.Fatalf("unknown command %s", args[0])
	}
	v := keyspace.Reader{R: c.rows(), NowMs: cmdNow, LSN: c.lsn + 1}
	res, err := spec.Exec(&commands.Ctx{NowMs: cmdNow}, v, raw)
	if err != nil {
		if !commands.IsInputError(err) {
			c.t.Fatalf("%s: %v", args[0], err)
		}
		return "error: " + err.Error()
	}
	if len(res.Ops) > 0 {
		c.lsn++
		c.apply(c.lsn, res.Ops)
	}
	return res.Reply
}

// TestStringCommandsOnChunkedStrings runs the string commands on values
// past keyspace.ChunkThreshold against storage (which keeps them in
// chunks) and against the rows in memory (one row each): every reply must
// be the same, and storage must hold them in chunks.
func TestStringCommandsOnChunkedStrings(t *testing.T) {
	d, err := storage.Open("cmds", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := &cmdTarget{t: t, rows: func() keyspace.Rows { return storage.View{DB: d}.Rows() }}
	st.apply = func(lsn uint64, ops []logrec.Op) {
		e := logrec.Entry{Epoch: 1, LSN: lsn, Ops: ops}
		if err := d.AppendLog([][]byte{logrec.Encode(&e)}); err != nil {
			t.Fatal(err)
		}
		if err := d.Apply([]logrec.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	mem := keyspace.NewLayer(keyspace.Empty{})
	model := &cmdTarget{t: t, rows: func() keyspace.Rows { return mem }}
	model.apply = func(lsn uint64, ops []logrec.Op) {
		if err := mem.ApplyOps(lsn, ops); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("0123456789abcdef", keyspace.ChunkThreshold/16+4099)
	n := fmt.Sprint(len(big))
	script := [][]string{
		{"SET", "s", big},
		{"STRLEN", "s"}, {"GET", "s"}, {"TYPE", "s"}, {"EXISTS", "s"},
		{"GETRANGE", "s", "0", "20"}, {"GETRANGE", "s", "-30", "-1"}, {"GETRANGE", "s", "1048570", "1048600"},
		{"SUBSTR", "s", "262140", "262150"},
		{"OBJECT", "ENCODING", "s"},
		{"APPEND", "s", "tail"}, {"STRLEN", "s"}, {"GETRANGE", "s", "-10", "-1"},
		{"SETRANGE", "s", "262143", "XYZ"}, {"GETRANGE", "s", "262140", "262150"},
		{"SETRANGE", "s", n, "past"}, {"STRLEN", "s"},
		{"GETBIT", "s", "2097151"}, {"SETBIT", "s", "8", "1"}, {"BITCOUNT", "s", "0", "10"},
		{"INCR", "s"},
		{"EXPIRE", "s", "100"}, {"TTL", "s"}, {"PERSIST", "s"}, {"TTL", "s"},
		{"GETEX", "s", "EX", "50"}, {"TTL", "s"},
		{"SET", "s", big, "GET"}, {"SET", "s", big, "KEEPTTL"}, {"TTL", "s"},
		{"COPY", "s", "c"}, {"GET", "c"}, {"RENAME", "c", "r"}, {"GET", "r"}, {"EXISTS", "c"},
		{"MGET", "s", "r", "nokey"},
		{"LCS", "s", "r", "LEN"},
		{"SET", "r", "small"}, {"GET", "r"},
		{"MSET", "m1", big, "m2", big[:keyspace.ChunkThreshold+1]}, {"STRLEN", "m2"},
		{"HSET", "s", "f", "v"},
		{"GETDEL", "s"}, {"EXISTS", "s"},
		{"SET", "s", big}, {"DEL", "s"}, {"GET", "s"},
		{"SET", "d", big}, {"DUMP", "d"},
		{"DBSIZE"},
	}
	var dump []byte
	for _, cmd := range script {
		got, want := st.do(cmd...), model.do(cmd...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%.40q: storage %.200v, model %.200v", cmd, got, want)
		}
		if cmd[0] == "DUMP" {
			dump = bytes.Clone(reflect.ValueOf(got).Bytes())
		}
	}
	for _, cmd := range [][]string{{"RESTORE", "d2", "0", string(dump)}, {"GET", "d2"}, {"RESTORE", "d2", "0", string(dump)}} {
		got, want := st.do(cmd...), model.do(cmd...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%.40q: storage %.200v, model %.200v", cmd, got, want)
		}
	}
	// Storage kept the long strings in chunks.
	for _, k := range []string{"m1", "m2", "d"} {
		lo, _ := keyspace.SubSpan([]byte(k), 0)
		_, hi := keyspace.SubSpan([]byte(k), ^uint64(0)) // every version
		rows := 0
		if err := (storage.View{DB: d}).Rows().Iter(lo, hi, func(_, _ []byte) bool { rows++; return true }); err != nil {
			t.Fatal(err)
		}
		if rows < 4 {
			t.Errorf("%s: %d sub-key rows: not kept in chunks", k, rows)
		}
	}
}
