package replication

// tailCache holds the most recent durable entries (encoded bytes and leader
// time), in LSN order without gaps. Follower streams that keep up are served
// from it rather than by iterating the log in Pebble and verifying each
// checksum again, and follower lag in seconds is read from its times. It is
// bounded by maxBytes (at least one entry is kept); older entries are read
// from the log. The caller synchronises access.
type tailCache struct {
	first    uint64 // LSN of entries[0]
	entries  []tailEntry
	bytes    int
	maxBytes int
}

type tailEntry struct {
	raw    []byte
	timeNs int64 // the entry's leader time
}

// add appends the entry at lsn. An LSN that does not follow the last one
// (the leader restarted its sequence) starts the cache afresh.
func (t *tailCache) add(lsn uint64, raw []byte, timeNs int64) {
	if len(t.entries) == 0 || lsn != t.first+uint64(len(t.entries)) {
		clear(t.entries)
		t.entries, t.first, t.bytes = t.entries[:0], lsn, 0
	}
	t.entries = append(t.entries, tailEntry{raw, timeNs})
	t.bytes += len(raw)
	for t.bytes > t.maxBytes && len(t.entries) > 1 {
		// Reslicing keeps add amortised O(1): append moves the live
		// entries to a new array when this one runs out.
		t.bytes -= len(t.entries[0].raw)
		t.entries[0] = tailEntry{}
		t.entries = t.entries[1:]
		t.first++
	}
}

// read returns the entries with LSN in [lo, hi], stopping once maxBytes is
// reached (always at least one entry), and false when lo is not cached.
// The entries' bytes are immutable.
func (t *tailCache) read(lo, hi uint64, maxBytes int) ([][]byte, bool) {
	if lo < t.first || lo > hi || lo >= t.first+uint64(len(t.entries)) {
		return nil, false
	}
	end := min(hi-t.first+1, uint64(len(t.entries)))
	var out [][]byte
	size := 0
	for i := lo - t.first; i < end; i++ {
		if len(out) > 0 && size+len(t.entries[i].raw) > maxBytes {
			break
		}
		out = append(out, t.entries[i].raw)
		size += len(t.entries[i].raw)
	}
	return out, true
}

// timeFrom returns the leader time of entry lsn or, when that entry has
// left the cache, of the oldest cached entry after it: an upper bound of
// lsn's time. false when no cached entry is at or after lsn.
func (t *tailCache) timeFrom(lsn uint64) (int64, bool) {
	if lsn >= t.first+uint64(len(t.entries)) {
		return 0, false
	}
	return t.entries[max(lsn, t.first)-t.first].timeNs, true
}
