package script

import (
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// memView is a keyspace in memory that applies each command's ops as one
// entry, as storage does: the node's path without a node.
type memView struct {
	rows *keyspace.Layer
	now  int64
	lsn  uint64
}

func newMem() *memView {
	return &memView{rows: keyspace.NewLayer(keyspace.Empty{}), now: 1_700_000_000_000, lsn: 1}
}

func (m *memView) r() keyspace.Reader {
	return keyspace.Reader{R: m.rows, NowMs: m.now, LSN: m.lsn}
}
func (m *memView) Get(key []byte) (keyspace.Value, bool, error) { return m.r().Get(key) }
func (m *memView) Scan(start []byte, fn func([]byte, keyspace.Value) bool) error {
	return m.r().Scan(start, fn)
}
func (m *memView) Sub(key []byte, ver uint64, sub []byte) ([]byte, bool, error) {
	return m.r().Sub(key, ver, sub)
}
func (m *memView) SubScan(key []byte, ver uint64, start []byte, fn func(sub, val []byte) bool) error {
	return m.r().SubScan(key, ver, start, fn)
}
func (m *memView) SubScanReverse(key []byte, ver uint64, end []byte, fn func(sub, val []byte) bool) error {
	return m.r().SubScanReverse(key, ver, end, fn)
}
func (m *memView) Rows() keyspace.Rows { return m.rows }
func (m *memView) Now() int64          { return m.now }
func (m *memView) NewVersion() uint64  { return m.lsn }

func (m *memView) apply(t testing.TB, ops []logrec.Op) {
	t.Helper()
	if len(ops) == 0 {
		return
	}
	if err := m.rows.ApplyOps(m.lsn, ops); err != nil {
		t.Fatal(err)
	}
	m.lsn++
}

// do runs one command as a node would: a script through the engine, its
// ops applied as one entry; an input error becomes its ERR reply.
func do(t *testing.T, e *Engine, m *memView, args ...string) commands.Reply {
	t.Helper()
	a := make([][]byte, len(args))
	for i, s := range args {
		a[i] = []byte(s)
	}
	spec, ok := commands.Lookup(a[0])
	if !ok {
		t.Fatalf("unknown command %q", args[0])
	}
	if err := commands.Check(spec, a); err != nil {
		return commands.ErrorReply("ERR " + err.Error())
	}
	res, err := spec.Exec(&commands.Ctx{NowMs: m.now, Scripts: e}, m, a)
	if err != nil {
		if !commands.IsInputError(err) {
			t.Fatal(err)
		}
		return commands.ErrorReply("ERR " + err.Error())
	}
	m.apply(t, res.Ops)
	return res.Reply
}

// eval runs EVAL body with numkeys and the rest.
func eval(t *testing.T, e *Engine, m *memView, body string, rest ...string) commands.Reply {
	t.Helper()
	return do(t, e, m, append([]string{"EVAL", body}, rest...)...)
}

func errText(r commands.Reply) string {
	if e, ok := r.(commands.ErrorReply); ok {
		return string(e)
	}
	return ""
}

func hasPrefix(r commands.Reply, p string) bool {
	return strings.HasPrefix(errText(r), p)
}
