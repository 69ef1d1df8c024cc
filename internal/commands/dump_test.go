package commands

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// rowsOf is key's metadata (expiry and version aside) and every sub-key
// row of its live version.
func rowsOf(t *testing.T, v *memView, key string) (Value, [][2]string) {
	t.Helper()
	val, ok, err := v.Get([]byte(key))
	if err != nil || !ok {
		t.Fatalf("%s: found %v, err %v", key, ok, err)
	}
	var rows [][2]string
	if !val.IsString() {
		err := v.SubScan([]byte(key), val.Version, nil, func(sub, row []byte) bool {
			rows = append(rows, [2]string{string(sub), string(row)})
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	val.ExpireAtMs, val.Version = 0, 0
	return val, rows
}

// plantSet writes a collection of type 3 (a set, whose commands live in
// another package's branch) straight as ops: one metadata row and a row
// per member, as the set commands will.
func plantSet(v *memView, key string, members ...string) {
	ops := []logrec.Op{{Kind: logrec.OpMeta, Key: []byte(key), Type: uint8(keyspace.TypeSet), Version: v.lsn, Size: uint64(len(members))}}
	for _, m := range members {
		ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: []byte(key), Version: v.lsn, Sub: []byte(m), Value: nil})
	}
	v.apply(ops)
}

// dumpOf is DUMP key's payload.
func dumpOf(t *testing.T, v *memView, key string) string {
	t.Helper()
	b, ok := do(t, v, "DUMP", key).(Bulk)
	if !ok || b == nil {
		t.Fatalf("DUMP %s = %v", key, b)
	}
	return string(b)
}

// TestDumpRestoreRoundTrip dumps a string, a hash and a set and restores
// each under a new name: the same metadata and the same rows come back,
// under the new key's own version, with the TTL RESTORE gives. COPY
// moves them the same way.
func TestDumpRestoreRoundTrip(t *testing.T) {
	v := newMem(now)
	v.set("s", "hello\x00world", now+60_000)
	do(t, v, "HSET", "h", "a", "1", "b", "", "", "empty field", "bin\xff", "\x00\x01")
	plantSet(v, "set", "x", "y", "z")
	v.set("e", "", 0)
	for _, key := range []string{"s", "h", "set", "e"} {
		p := dumpOf(t, v, key)
		want, wantRows := rowsOf(t, v, key)
		for _, tc := range []struct {
			args []string
			exp  int64
		}{
			{[]string{"0"}, 0},
			{[]string{"5000"}, now + 5000},
			{[]string{fmt.Sprint(now + 7000), "ABSTTL"}, now + 7000},
			{[]string{"0", "IDLETIME", "10"}, 0},
			{[]string{"0", "FREQ", "255"}, 0},
		} {
			dst := key + "-copy"
			do(t, v, "DEL", dst)
			args := append([]string{"RESTORE", dst, tc.args[0], p}, tc.args[1:]...)
			if got := do(t, v, args...); got != OK {
				t.Fatalf("RESTORE %s %v = %v", key, tc.args, got)
			}
			got, gotRows := rowsOf(t, v, dst)
			if !reflect.DeepEqual(got, want) || !slices.Equal(gotRows, wantRows) {
				t.Fatalf("RESTORE of %s gave %+v %q, want %+v %q", key, got, gotRows, want, wantRows)
			}
			if raw := v.raw(dst); raw.ExpireAtMs != tc.exp {
				t.Fatalf("RESTORE %s %v: expiry %d, want %d", key, tc.args, raw.ExpireAtMs, tc.exp)
			}
			if raw := v.raw(dst); !raw.IsString() && raw.Version != v.lsn-1 {
				t.Fatalf("RESTORE of %s: version %d, want the entry's LSN %d", key, raw.Version, v.lsn-1)
			}
		}
		// COPY is the same generic move, row for row.
		if got := do(t, v, "COPY", key, key+"-copy", "REPLACE"); got != Int(1) {
			t.Fatalf("COPY %s = %v", key, got)
		}
		got, gotRows := rowsOf(t, v, key+"-copy")
		if !reflect.DeepEqual(got, want) || !slices.Equal(gotRows, wantRows) {
			t.Fatalf("COPY of %s gave %+v %q, want %+v %q", key, got, gotRows, want, wantRows)
		}
	}
}

// TestRestore checks RESTORE's checks in Redis's order and the ops it
// logs over an existing key.
func TestRestore(t *testing.T) {
	v := newMem(now)
	v.set("s", "v", 0)
	do(t, v, "HSET", "h", "a", "1", "b", "2")
	ps, ph := dumpOf(t, v, "s"), dumpOf(t, v, "h")
	for _, tc := range []struct {
		args []string
		want Reply
	}{
		{[]string{"s", "0", ps}, BusyKey},
		{[]string{"s", "-1", ps}, BusyKey}, // the key is checked before the TTL
		{[]string{"new", "-1", ps}, ErrorReply("ERR Invalid TTL value, must be >= 0")},
		{[]string{"new", "x", ps}, ErrorReply("ERR value is not an integer or out of range")},
		{[]string{"new", "0", "garbage"}, ErrorReply("ERR DUMP payload version or checksum are wrong")},
		{[]string{"new", "0", ""}, ErrorReply("ERR DUMP payload version or checksum are wrong")},
		{[]string{"s", "0", "garbage", "REPLACE", "foo"}, ErrorReply("ERR syntax error")},
		{[]string{"s", "0", ps, "IDLETIME", "-1"}, ErrorReply("ERR Invalid IDLETIME value, must be >= 0")},
		{[]string{"s", "0", ps, "IDLETIME", "x"}, ErrorReply("ERR value is not an integer or out of range")},
		{[]string{"s", "0", ps, "FREQ", "256"}, ErrorReply("ERR Invalid FREQ value, must be >= 0 and <= 255")},
		{[]string{"s", "0", ps, "FREQ", "1", "IDLETIME", "1"}, ErrorReply("ERR syntax error")},
		{[]string{"s", "0", ps, "IDLETIME", "1", "FREQ", "1"}, ErrorReply("ERR syntax error")},
		{[]string{"s", "0", ps, "IDLETIME"}, ErrorReply("ERR syntax error")},
	} {
		res, err := run(&Ctx{NowMs: now}, v, append([]string{"RESTORE"}, tc.args...)...)
		got := res.Reply
		if err != nil {
			got = ErrorReply("ERR " + err.Error())
		}
		if got != tc.want || len(res.Ops) != 0 {
			t.Errorf("RESTORE %q = %v with %d ops, want %v and none", tc.args, got, len(res.Ops), tc.want)
		}
	}

	// REPLACE over a hash drops its version first, so none of its rows
	// outlive it.
	res, err := run(&Ctx{NowMs: now}, v, "RESTORE", "h", "0", ps, "REPLACE")
	if err != nil {
		t.Fatal(err)
	}
	h := v.raw("h")
	want := []logrec.Op{{Kind: logrec.OpDrop, Key: []byte("h"), Version: h.Version}, put("h", "v", 0)}
	if !reflect.DeepEqual(res.Ops, want) {
		t.Fatalf("RESTORE h over a hash logs %v, want %v", res.Ops, want)
	}
	// A hash over a string: the string's delete, the rows and the
	// metadata at the entry's version.
	res, err = run(&Ctx{NowMs: now}, v, "RESTORE", "s", "0", ph, "REPLACE")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []logrec.OpKind
	for _, op := range res.Ops {
		kinds = append(kinds, op.Kind)
		if op.Kind != logrec.OpDelete && op.Version != v.lsn {
			t.Fatalf("RESTORE s logs %v at version %d, want %d", op, op.Version, v.lsn)
		}
	}
	if wantKinds := []logrec.OpKind{logrec.OpDelete, logrec.OpSubPut, logrec.OpSubPut, logrec.OpMeta}; !slices.Equal(kinds, wantKinds) {
		t.Fatalf("RESTORE s over a string logs %v, want %v", kinds, wantKinds)
	}
	// An absolute TTL already past: OK, the old key deleted, nothing new.
	res, err = run(&Ctx{NowMs: now}, v, "RESTORE", "h", "1000", ph, "REPLACE", "ABSTTL")
	if err != nil || res.Reply != OK || !reflect.DeepEqual(res.Ops, []logrec.Op{{Kind: logrec.OpDrop, Key: []byte("h"), Version: h.Version}}) {
		t.Fatalf("RESTORE h past ABSTTL REPLACE = %v %v %v", res.Reply, res.Ops, err)
	}
	res, err = run(&Ctx{NowMs: now}, v, "RESTORE", "new", "1000", ph, "ABSTTL")
	if err != nil || res.Reply != OK || len(res.Ops) != 0 {
		t.Fatalf("RESTORE new past ABSTTL = %v %v %v", res.Reply, res.Ops, err)
	}
}

// sealed returns body with a version byte before it and a valid checksum
// after it: a payload that verifies, to check what RESTORE parses.
func sealed(version byte, body []byte) string {
	p := append([]byte{version}, body...)
	return string(binary.LittleEndian.AppendUint32(p, frame.Checksum(p)))
}

// TestRestoreRefusesDamage flips every bit of a payload and cuts it at
// every length: RESTORE refuses each with Redis's payload error and logs
// nothing. Payloads that verify but do not hold what DUMP writes are "Bad
// data format".
func TestRestoreRefusesDamage(t *testing.T) {
	v := newMem(now)
	do(t, v, "HSET", "h", "a", "1", "bb", "22", "ccc", "333")
	p := dumpOf(t, v, "h")
	check := func(what, payload string, want Reply) {
		t.Helper()
		res, err := run(&Ctx{NowMs: now}, v, "RESTORE", "new", "0", payload)
		got := res.Reply
		if err != nil {
			got = ErrorReply("ERR " + err.Error())
		}
		if got != want || len(res.Ops) != 0 {
			t.Fatalf("%s: RESTORE = %v with %d ops, want %v", what, got, len(res.Ops), want)
		}
	}
	wrong := ErrorReply("ERR DUMP payload version or checksum are wrong")
	for i := range len(p) * 8 {
		b := []byte(p)
		b[i/8] ^= 1 << (i % 8)
		check(fmt.Sprintf("bit %d flipped", i), string(b), wrong)
	}
	for n := range len(p) {
		check(fmt.Sprintf("cut at %d", n), p[:n], wrong)
	}
	check("version 2", sealed(2, []byte(p[1:len(p)-4])), wrong)

	bad := ErrorReply("ERR Bad data format")
	meta := func(val Value) []byte {
		m := keyspace.AppendMetaRow(nil, val)
		return append(binary.AppendUvarint(nil, uint64(len(m))), m...)
	}
	row := func(sub, val string) []byte {
		b := binary.AppendUvarint(nil, uint64(len(sub)))
		b = append(b, sub...)
		b = binary.AppendUvarint(b, uint64(len(val)))
		return append(b, val...)
	}
	hash := Value{Type: keyspace.TypeHash, Size: 2}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		what string
		body []byte
	}{
		{"type byte and metadata disagree", cat([]byte{byte(keyspace.TypeSet)}, meta(hash), row("a", "1"), row("b", "2"))},
		{"unknown type", cat([]byte{9}, meta(Value{Type: 9}), row("a", "1"))},
		{"metadata with an expiry", cat([]byte{2}, meta(Value{Type: keyspace.TypeHash, Size: 1, ExpireAtMs: 5}), row("a", "1"))},
		{"metadata with a version", cat([]byte{2}, meta(Value{Type: keyspace.TypeHash, Size: 1, Version: 5}), row("a", "1"))},
		{"rows out of order", cat([]byte{2}, meta(hash), row("b", "2"), row("a", "1"))},
		{"a row twice", cat([]byte{2}, meta(hash), row("a", "1"), row("a", "1"))},
		{"a collection without rows", cat([]byte{2}, meta(hash))},
		{"a row cut short", cat([]byte{2}, meta(hash), row("a", "1"), row("b", "2")[:3])},
		{"a string with a row", cat([]byte{1}, meta(Value{Type: keyspace.TypeString, Data: []byte("x")}), row("a", "1"))},
		{"a metadata length past the end", cat([]byte{1}, []byte{100}, []byte("short"))},
		{"no metadata", []byte{2}},
		{"a length in two bytes", cat([]byte{2}, meta(hash), row("a", "1"), []byte{0x81, 0x00, 'b', 1, '2'})},
	} {
		check(tc.what, sealed(dumpVersion, tc.body), bad)
	}
}

// TestDumpBound lowers MaxDumpBytes: a DUMP or COPY past it is refused
// with an error naming the bound, one under it still works.
func TestDumpBound(t *testing.T) {
	defer func(n int) { MaxDumpBytes = n }(MaxDumpBytes)
	MaxDumpBytes = 1000
	v := newMem(now)
	args := []string{"HSET", "big"}
	for i := range 100 {
		args = append(args, fmt.Sprintf("field-%03d", i), "some value")
	}
	do(t, v, args...)
	v.set("long", strings.Repeat("x", 1001), 0)
	v.set("short", strings.Repeat("x", 900), 0)
	for _, key := range []string{"big", "long"} {
		want := ErrorReply(fmt.Sprintf("ERR DUMP payload of key '%s' would exceed 1000 bytes", key))
		if got := do(t, v, "DUMP", key); got != want {
			t.Errorf("DUMP %s = %v, want %v", key, got, want)
		}
	}
	if p := dumpOf(t, v, "short"); len(p) > 1000 {
		t.Errorf("DUMP short is %d bytes", len(p))
	}
	for _, key := range []string{"big", "long"} {
		want := ErrorReply(fmt.Sprintf("ERR COPY of key '%s' would log more than 1000 bytes", key))
		if got := do(t, v, "COPY", key, "dst"); got != want {
			t.Errorf("COPY %s = %v, want %v", key, got, want)
		}
	}
	if got := do(t, v, "COPY", "short", "dst"); got != Int(1) {
		t.Errorf("COPY short = %v", got)
	}
	if got := do(t, v, "DUMP", "nokey"); !reflect.DeepEqual(got, Null) {
		t.Errorf("DUMP nokey = %v", got)
	}
}

// FuzzRestorePayload: RESTORE of any bytes never panics, and whatever it
// accepts dumps back to the same bytes (a payload has one encoding). With
// seal set the input is a body that gets a valid version and checksum,
// so the fuzzer reaches the parser past the checksum.
func FuzzRestorePayload(f *testing.F) {
	v := newMem(now)
	v.set("s", "hello", 0)
	res, err := run(&Ctx{NowMs: now}, v, "HSET", "h", "a", "1", "b", "2")
	if err != nil {
		f.Fatal(err)
	}
	v.apply(res.Ops)
	plantSet(v, "set", "m1", "m2")
	for _, k := range []string{"s", "h", "set"} {
		res, err := run(&Ctx{NowMs: now}, v, "DUMP", k)
		if err != nil {
			f.Fatal(err)
		}
		p := []byte(res.Reply.(Bulk))
		f.Add(p, false)
		f.Add(p[1:len(p)-4], true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{2, 25}, true)
	f.Fuzz(func(t *testing.T, p []byte, seal bool) {
		if seal {
			p = []byte(sealed(dumpVersion, p))
		}
		w := newMem(now)
		res, err := run(&Ctx{NowMs: now}, w, "RESTORE", "k", "0", string(p))
		if err != nil {
			if !IsInputError(err) {
				t.Fatalf("RESTORE: %v", err)
			}
			return
		}
		w.apply(res.Ops)
		back, _ := do(t, w, "DUMP", "k").(Bulk)
		if !bytes.Equal(back, p) {
			t.Fatalf("RESTORE accepted %x, which dumps back as %x", p, back)
		}
	})
}

// randomKeyOdds is the exact chance of each answer of RANDOMKEY on v: it
// runs randomKey once along every sequence of random choices (a
// depth-first search over them), each weighing the product of 1/n of its
// choices.
func randomKeyOdds(t *testing.T, v View) map[string]float64 {
	t.Helper()
	odds := map[string]float64{}
	var explore func(path []int)
	explore = func(path []int) {
		var ns []int
		res, err := randomKey(v, func(n int) int {
			c := 0
			if len(ns) < len(path) {
				c = path[len(ns)]
			}
			ns = append(ns, n)
			return c
		})
		if err != nil {
			t.Fatal(err)
		}
		p := 1.0
		for _, n := range ns {
			p /= float64(n)
		}
		odds[string(res.Reply.(Bulk))] += p
		// This run took choice 0 after path; every other choice at each
		// of those steps is a run of its own.
		for j := len(path); j < len(ns); j++ {
			for c := 1; c < ns[j]; c++ {
				explore(append(append(slices.Clone(path), make([]int, j-len(path))...), c))
			}
		}
	}
	explore(nil)
	return odds
}

// TestRandomKeyFair measures, exactly, how far RANDOMKEY is from uniform
// on key sets of the shapes its comment names, and that it never answers
// an expired key.
func TestRandomKeyFair(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys func(i int) string
		// lo and hi bound every key's chance as a multiple of 1/n.
		lo, hi float64
	}{
		{"fixed-width counters", func(i int) string { return fmt.Sprintf("key:%04d", i) }, 0.999, 1.001},
		{"random hex ids", func(i int) string {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			return fmt.Sprintf("session:%016x", r.Uint64())
		}, 0.5, 1.5},
		{"counters of varying width", func(i int) string { return fmt.Sprintf("id:%d", i+1) }, 0.2, 5},
	} {
		v := newMem(now)
		const n = 300
		for i := range n {
			v.set(tc.keys(i), "v", 0)
		}
		// Expired keys in the middle and at both ends are never answered.
		v.set("!expired-first", "v", now-1)
		v.set(tc.keys(100)+"x", "v", now)
		v.set("~expired-last", "v", now-1)
		odds := randomKeyOdds(t, v.frozen())
		lo, hi, sum := 1.0, 0.0, 0.0
		for i := range n {
			p := odds[tc.keys(i)] * n
			lo, hi, sum = min(lo, p), max(hi, p), sum+odds[tc.keys(i)]
		}
		t.Logf("%s: %d keys: chances from %.3f to %.3f of 1/n", tc.name, n, lo, hi)
		if len(odds) != n || sum < 0.999999 {
			t.Errorf("%s: %d distinct answers, total chance %v, want %d and 1 (expired keys never)", tc.name, len(odds), sum, n)
		}
		if lo < tc.lo || hi > tc.hi {
			t.Errorf("%s: chances from %.3f to %.3f of 1/n, want within [%.3f, %.3f]", tc.name, lo, hi, tc.lo, tc.hi)
		}
	}

	v := newMem(now)
	if got := do(t, v, "RANDOMKEY"); !reflect.DeepEqual(got, Null) {
		t.Errorf("RANDOMKEY on no keys = %v", got)
	}
	v.set("gone", "v", now)
	if got := do(t, v, "RANDOMKEY"); !reflect.DeepEqual(got, Null) {
		t.Errorf("RANDOMKEY on an expired key = %v", got)
	}
	v.set("only", "v", 0)
	if got := do(t, v, "RANDOMKEY"); !reflect.DeepEqual(got, Bulk("only")) {
		t.Errorf("RANDOMKEY on one key = %v", got)
	}
	do(t, v, "HSET", "h", "f", "v")
	if odds := randomKeyOdds(t, v); odds["h"] != 0.5 || odds["only"] != 0.5 {
		t.Errorf("RANDOMKEY on two keys: %v", odds)
	}
}

// frozen is m's rows as they are now, read at m's clock, fast to seek.
func (m *memView) frozen() View {
	r := &sortedRows{}
	_ = m.rows.Iter([]byte{0}, []byte{0xff}, func(k, v []byte) bool {
		r.keys, r.vals = append(r.keys, clone(k)), append(r.vals, clone(v))
		return true
	})
	return keyspace.Reader{R: r, NowMs: m.now}
}
