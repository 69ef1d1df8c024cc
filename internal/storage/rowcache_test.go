package storage

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
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
