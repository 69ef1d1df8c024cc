package node

import "testing"

// TestPlanMemoryWithinBudget: what Pebble allocates outside the Go heap
// plus the Go limit is the budget, and every cache gets a share.
func TestPlanMemoryWithinBudget(t *testing.T) {
	for _, budget := range []int64{0, 64 << 20, 256 << 20, 1 << 30, 16 << 30} {
		p := PlanMemory(budget)
		b := budget
		if b == 0 {
			b = DefaultMaxMemory
		}
		st := p.Storage
		if st.CacheBytes <= 0 || st.RowCacheBytes <= 0 || st.MemTableBytes < 4<<20 || st.MemTables < 2 {
			t.Fatalf("budget %d: %+v", budget, st)
		}
		if got := st.MemoryBytes() + p.GoLimit; got != b {
			t.Errorf("budget %d: Pebble %d + Go %d = %d", b, st.MemoryBytes(), p.GoLimit, got)
		}
		if p.GoLimit < st.RowCacheBytes*2 {
			t.Errorf("budget %d: Go limit %d leaves no room beside the row cache %d", b, p.GoLimit, st.RowCacheBytes)
		}
	}
}
