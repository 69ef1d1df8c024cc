package replication

// tailCache holds the encoded bytes of the most recent durable entries, in
// LSN order without gaps, so that follower streams that keep up are served
// from memory rather than by iterating the log in Pebble and verifying each
// checksum again. It is bounded by maxBytes (at least one entry is kept);
// older entries are read from the log. The caller synchronises access.
type tailCache struct {
	first    uint64 // LSN of raws[0]
	raws     [][]byte
	bytes    int
	maxBytes int
}

// add appends the entry at lsn. An LSN that does not follow the last one
// (the leader restarted its sequence) starts the cache afresh.
func (t *tailCache) add(lsn uint64, raw []byte) {
	if len(t.raws) == 0 || lsn != t.first+uint64(len(t.raws)) {
		clear(t.raws)
		t.raws, t.first, t.bytes = t.raws[:0], lsn, 0
	}
	t.raws = append(t.raws, raw)
	t.bytes += len(raw)
	for t.bytes > t.maxBytes && len(t.raws) > 1 {
		// Reslicing keeps add amortised O(1): append moves the live
		// entries to a new array when this one runs out.
		t.bytes -= len(t.raws[0])
		t.raws[0] = nil
		t.raws = t.raws[1:]
		t.first++
	}
}

// read returns the entries with LSN in [lo, hi], stopping once maxBytes is
// reached (always at least one entry), and false when lo is not cached.
// The returned slice is a copy; the entries' bytes are immutable.
func (t *tailCache) read(lo, hi uint64, maxBytes int) ([][]byte, bool) {
	if lo < t.first || lo > hi || lo >= t.first+uint64(len(t.raws)) {
		return nil, false
	}
	end := min(hi-t.first+1, uint64(len(t.raws)))
	var out [][]byte
	size := 0
	for i := lo - t.first; i < end; i++ {
		if len(out) > 0 && size+len(t.raws[i]) > maxBytes {
			break
		}
		out = append(out, t.raws[i])
		size += len(t.raws[i])
	}
	return out, true
}
