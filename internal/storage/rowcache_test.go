package storage

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/snapshot"
)

// TestRowCacheFollowsWrites: a Get that filled the row cache never hides a
// later Apply, a delete or a seed.
func TestRowCacheFollowsWrites(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	get := func(k string) (string, bool) {
		t.Helper()
		v, ok, err := View{DB: d, NowMs: 1}.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		return string(v.Data), ok
	}
	steps := []struct {
		entry logrec.Entry
		want  string
		found bool
	}{
		{entry(1, 1, put("k", "v1")), "v1", true},
		{entry(1, 2, put("k", "v2")), "v2", true},
		{entry(1, 3, putExp("k", "v3", 1)), "", false}, // expired at NowMs 1
		{entry(1, 4, put("k", "v4")), "v4", true},
		{entry(1, 5, del("k")), "", false},
		{entry(1, 6, put("k", "v6")), "v6", true},
	}
	for range 2 {
		if v, ok := get("k"); ok {
			t.Fatalf("before any write: Get = %q", v)
		}
	}
	for _, s := range steps {
		mustAppend(t, d, s.entry)
		mustApply(t, d, s.entry)
		for range 2 { // the second read is served by the cache when the row is there
			if v, ok := get("k"); v != s.want || ok != s.found {
				t.Fatalf("after lsn %d: Get = %q, %v; want %q, %v", s.entry.LSN, v, ok, s.want, s.found)
			}
		}
	}
	if st := d.RowCacheStats(); st.Hits == 0 {
		t.Fatalf("the cache served nothing: %+v", st)
	}
	if err := d.BeginIngest(); err != nil {
		t.Fatal(err)
	}
	if v, ok := get("k"); ok {
		t.Fatalf("after BeginIngest: Get = %q, want none", v)
	}
}

// TestRowCacheSubKeys: sub-key rows are cached (a second point read is a
// hit) and never read stale: not after their version is dropped and named
// again, nor after Sweep removes a version, a FLUSHALL, or a seed that
// brings other rows under the same keys. Each case reuses a version, which
// no command does (versions are LSNs), so that a stale cached row would
// be read.
func TestRowCacheSubKeys(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	lsn := uint64(0)
	apply := func(ops ...logrec.Op) {
		t.Helper()
		lsn++
		e := entry(1, lsn, ops...)
		mustAppend(t, d, e)
		mustApply(t, d, e)
	}
	sub := func(k string, ver uint64, f string) string {
		t.Helper()
		var first string
		for i := range 2 { // the second read is served by the cache when the first filled it
			v, ok, err := View{DB: d, NowMs: 1}.Sub([]byte(k), ver, []byte(f))
			if err != nil {
				t.Fatal(err)
			}
			got := "none"
			if ok {
				got = fmt.Sprintf("%q", v)
			}
			if i == 1 && got != first {
				t.Fatalf("%s v%d %s read %s, then %s", k, ver, f, first, got)
			}
			first = got
		}
		return first
	}
	check := func(what, k string, ver uint64, f, want string) {
		t.Helper()
		if got := sub(k, ver, f); got != want {
			t.Fatalf("%s: %s v%d %s = %s, want %s", what, k, ver, f, got, want)
		}
	}
	drop := func(k string, ver uint64) logrec.Op {
		return logrec.Op{Kind: logrec.OpDrop, Key: []byte(k), Version: ver}
	}
	member := logrec.Op{Kind: logrec.OpSubPut, Key: []byte("s"), Version: 3, Sub: []byte("m")} // an empty row

	apply(hmeta("h", 1, 1), hput("h", 1, "f", "x"), logrec.Op{Kind: logrec.OpMeta, Key: []byte("s"), Type: uint8(keyspace.TypeSet), Version: 3, Size: 1}, member)
	check("written", "h", 1, "f", `"x"`)
	check("an empty row", "s", 3, "m", `""`)
	check("never written", "h", 1, "g", "none")
	hits := d.RowCacheStats().Hits
	check("cached", "h", 1, "f", `"x"`)
	if d.RowCacheStats().Hits == hits {
		t.Fatal("a sub-key read twice was not served by the cache")
	}
	apply(hput("h", 1, "g", "y"), logrec.Op{Kind: logrec.OpSubDel, Key: []byte("h"), Version: 1, Sub: []byte("f")})
	check("put after a cached miss", "h", 1, "g", `"y"`)
	check("deleted", "h", 1, "f", "none")

	// A drop, and the version named again.
	apply(hput("h", 1, "f", "x2"))
	check("put back", "h", 1, "f", `"x2"`)
	apply(drop("h", 1))
	apply(hmeta("h", 1, 0))
	check("after a drop", "h", 1, "f", "none")
	check("after a drop", "h", 1, "g", "none")

	// A version replaced without a drop, removed by Sweep.
	apply(hmeta("w", 5, 1), hput("w", 5, "f", "old"))
	check("written", "w", 5, "f", `"old"`)
	apply(put("w", "a string now"))
	for done := false; !done; {
		before := d.sweep.passes
		if _, err := d.Sweep(int64(lsn)*sweepIntervalMs*10, 100); err != nil {
			t.Fatal(err)
		}
		done = d.sweep.passes > before
	}
	apply(hmeta("w", 5, 0))
	check("after a sweep", "w", 5, "f", "none")

	// FLUSHALL, and the versions named again.
	apply(hput("h", 1, "f", "x3"))
	check("written", "h", 1, "f", `"x3"`)
	apply(logrec.Op{Kind: logrec.OpFlushAll})
	apply(hmeta("h", 1, 0))
	check("after FLUSHALL", "h", 1, "f", "none")
	check("after FLUSHALL", "s", 3, "m", "none")

	// A seed: other rows under the same row keys.
	apply(hput("h", 1, "f", "mine"))
	check("written", "h", 1, "f", `"mine"`)
	if err := d.BeginIngest(); err != nil {
		t.Fatal(err)
	}
	check("seeding", "h", 1, "f", "none") // cached as no row
	rows := []snapshot.Row{
		{Key: keyspace.MetaKey([]byte("h")), Value: keyspace.AppendMetaRow(nil, keyspace.Value{Type: keyspace.TypeHash, Version: 1, Size: 1})},
		{Key: keyspace.SubKey([]byte("h"), 1, []byte("f")), Value: []byte("theirs")},
	}
	if err := d.IngestRows(rows); err != nil {
		t.Fatal(err)
	}
	check("after the seed", "h", 1, "f", `"theirs"`)
}

// TestRowCacheKeysNeverMeet: the cache keys rows by their full row key,
// so a string whose name is the bytes of a list's head row key (after
// the sub-key prefix byte) and that head row each read their own row.
func TestRowCacheKeysNeverMeet(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	head := keyspace.SubKey([]byte("l"), 1, keyspace.ListHeadSub)
	twin := head[1:] // a user key whose metadata row key is 'd' + these bytes
	for lsn, ops := range [][]logrec.Op{
		{{Kind: logrec.OpMeta, Key: []byte("l"), Type: uint8(keyspace.TypeList), Version: 1, Size: 1},
			{Kind: logrec.OpSubPut, Key: []byte("l"), Version: 1, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(keyspace.ListStartIndex)},
			{Kind: logrec.OpSubPut, Key: []byte("l"), Version: 1, Sub: keyspace.ListIndexSub(keyspace.ListStartIndex), Value: []byte("e")}},
		{put(string(twin), "a string")},
	} {
		e := entry(1, uint64(lsn)+1, ops...)
		mustAppend(t, d, e)
		mustApply(t, d, e)
	}
	v := View{DB: d, NowMs: 1}
	for range 2 {
		row, ok, err := v.Sub([]byte("l"), 1, keyspace.ListHeadSub)
		if err != nil || !ok {
			t.Fatalf("head row: %v, %v", ok, err)
		}
		if h, err := keyspace.DecodeListHead(row); err != nil || h != keyspace.ListStartIndex {
			t.Fatalf("head row %q: %d, %v", row, h, err)
		}
		s, ok, err := v.Get(twin)
		if err != nil || !ok || string(s.Data) != "a string" {
			t.Fatalf("the string: %q, %v, %v", s.Data, ok, err)
		}
	}
}

// TestApplyCachesLastWriteOfRow: an Apply of a group of entries that each
// push to one list (a job queue's LPUSHes) gives the row cache each
// element row and only the last write of the list's metadata and head
// rows, which every entry writes; the cache then holds those last rows.
func TestApplyCachesLastWriteOfRow(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	const n = 20
	key := []byte("q")
	var es []logrec.Entry
	for i := range uint64(n) {
		head := keyspace.ListStartIndex - 1 - i // LPUSH: the head moves left
		es = append(es, entry(1, i+1,
			logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ListIndexSub(head), Value: []byte(fmt.Sprint("job", i))},
			logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(head)},
			logrec.Op{Kind: logrec.OpMeta, Key: key, Type: uint8(keyspace.TypeList), Version: 1, Size: i + 1}))
	}
	mustAppend(t, d, es...)
	before := d.cacheWrites.Load()
	mustApply(t, d, es...)
	if got, want := d.cacheWrites.Load()-before, uint64(n+2); got != want {
		t.Errorf("Apply of %d pushes gave the row cache %d rows, want %d (each element, one metadata and one head row)", n, got, want)
	}
	misses := d.RowCacheStats().Misses
	v, ok, err := View{DB: d, NowMs: 1}.Get(key)
	if err != nil || !ok || v.Size != n || v.Type != keyspace.TypeList {
		t.Fatalf("Get(q) = %+v, %v, %v; want a list of %d", v, ok, err, n)
	}
	row, ok, err := View{DB: d, NowMs: 1}.Sub(key, 1, keyspace.ListHeadSub)
	if err != nil || !ok {
		t.Fatalf("head row: %v, %v", ok, err)
	}
	if h, _ := keyspace.DecodeListHead(row); h != keyspace.ListStartIndex-n {
		t.Errorf("head row %d, want %d", h, keyspace.ListStartIndex-n)
	}
	if st := d.RowCacheStats(); st.Misses != misses {
		t.Errorf("the metadata and head rows were not read from the row cache: misses %d -> %d", misses, st.Misses)
	}
}

// TestApplyLeavesZSetIndexRowsUncached: a ZADD's index row, which no one
// reads by its key, is not kept in the row cache (its member row and the
// metadata row are), and a copy the cache held is dropped: the index
// still reads right, by iteration, after the score moves.
func TestApplyLeavesZSetIndexRowsUncached(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	key, member := []byte("z"), []byte("m")
	zadd := func(lsn uint64, score float64, old *float64, size uint64) logrec.Entry {
		ops := []logrec.Op{
			{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ZSetIndexSub(score, member)},
			{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ZSetMemberSub(member), Value: keyspace.AppendScore(nil, score)},
			{Kind: logrec.OpMeta, Key: key, Type: uint8(keyspace.TypeZSet), Version: 1, Size: size},
		}
		if old != nil {
			ops = append([]logrec.Op{{Kind: logrec.OpSubDel, Key: key, Version: 1, Sub: keyspace.ZSetIndexSub(*old, member)}}, ops...)
		}
		return entry(1, lsn, ops...)
	}
	es := []logrec.Entry{zadd(1, 1, nil, 1)}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if _, ok := d.rows.Peek(keyspace.SubKey(key, 1, keyspace.ZSetIndexSub(1, member))); ok {
		t.Error("the index row is in the row cache")
	}
	for _, k := range [][]byte{keyspace.SubKey(key, 1, keyspace.ZSetMemberSub(member)), keyspace.MetaKey(key)} {
		if _, ok := d.rows.Peek(k); !ok {
			t.Errorf("row %q is not in the row cache", k)
		}
	}
	// A copy of an index row the cache held (filled by a point read) is
	// dropped by a write of the row, and a score's move reads right.
	ik := keyspace.SubKey(key, 1, keyspace.ZSetIndexSub(2, member))
	d.rows.Put(ik, []byte("stale"))
	one := 1.0
	es = []logrec.Entry{zadd(2, 2, &one, 1)}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if row, ok := d.rows.Peek(ik); ok {
		t.Errorf("the index row written is cached as %q", row)
	}
	var subs []string
	if err := (View{DB: d, NowMs: 1}).SubScan(key, 1, nil, func(sub, _ []byte) bool { subs = append(subs, string(sub)); return true }); err != nil {
		t.Fatal(err)
	}
	if want := []string{string(keyspace.ZSetIndexSub(2, member)), string(keyspace.ZSetMemberSub(member))}; !slices.Equal(subs, want) {
		t.Errorf("rows %q, want %q", subs, want)
	}
}
