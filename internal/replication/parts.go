package replication

import (
	"fmt"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// Entries in parts. An entry larger than LeaderConfig.PartBytes goes to a
// follower that said Hello.takes_parts as several Appends, each with one
// EntryPart of at most PartBytes, back to back on the stream; the follower
// puts the entry together before anything else sees it (partAssembler, in
// its receiving goroutine), so the follower's core verifies its checksum,
// persists and applies it only whole. No message, and no receive buffer on
// either side, then holds more than a part, where a 64 MB value used to
// need a 64 MB message (and gRPC's buffer for it) per follower. A follower
// from before parts leaves takes_parts false and gets whole entries.

// DefaultPartBytes: LeaderConfig.PartBytes's default.
const DefaultPartBytes = 4 << 20

// maxPartedEntry bounds the size an entry's first part may announce: the
// follower allocates the entry's buffer from it. Far above any entry a
// leader writes (MaxEntryBytes), it only stops a damaged size from asking
// for all memory.
const maxPartedEntry = 1 << 34

// errPart: a part that does not continue the entry being put together, or
// another message between an entry's parts. The stream carries them in
// order, so this is damage; the follower refuses it as corrupt data (see
// Follower.Run).
var errPart = frame.NewCorruption("replication: entry part out of order")

// partSender is a follower stream's sending side for a follower that takes
// parts: it sends each Append's entries larger than max as parts, and
// everything else as it comes.
type partSender struct {
	LeaderStream
	max int
}

// Send sends m, an Append with large entries as several messages: the
// entries before a large one as an Append of their own, then the large one
// part by part, each with m's commit LSN, leader position and lease stamp
// (a commit LSN may pass the entries a message carries: the follower
// applies up to what it has).
func (s partSender) Send(m *peerpb.LeaderMessage) error {
	a := m.GetAppend()
	if a == nil || !s.large(a.Entries) {
		return s.LeaderStream.Send(m)
	}
	with := func(entries [][]byte, part *peerpb.EntryPart) *peerpb.LeaderMessage {
		return &peerpb.LeaderMessage{Epoch: m.Epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
			Entries:            entries,
			Part:               part,
			CommitLsn:          a.CommitLsn,
			LeaderLastLsn:      a.LeaderLastLsn,
			LeaderTimeUnixNano: a.LeaderTimeUnixNano,
			LeaseStamp:         a.LeaseStamp,
			LeaseLapsed:        a.LeaseLapsed,
			ReadStamp:          a.ReadStamp,
		}}}
	}
	entries := a.Entries
	for len(entries) > 0 {
		n := 0
		for n < len(entries) && len(entries[n]) <= s.max {
			n++
		}
		if n > 0 {
			if err := s.LeaderStream.Send(with(entries[:n], nil)); err != nil {
				return err
			}
			entries = entries[n:]
			continue
		}
		raw := entries[0]
		_, lsn, err := logrec.PeekLSNVerified(raw)
		if err != nil {
			return err
		}
		for off := 0; off < len(raw); off += s.max {
			part := &peerpb.EntryPart{Lsn: lsn, Size: uint64(len(raw)), Offset: uint64(off), Data: raw[off:min(off+s.max, len(raw))]}
			if err := s.LeaderStream.Send(with(nil, part)); err != nil {
				return err
			}
		}
		entries = entries[1:]
	}
	return nil
}

func (s partSender) large(entries [][]byte) bool {
	for _, e := range entries {
		if len(e) > s.max {
			return true
		}
	}
	return false
}

// partAssembler puts together, on the follower, the entry whose parts are
// arriving: a stream's receiver has one, and a stream that breaks between
// parts takes the partial entry with it.
type partAssembler struct {
	epoch uint64 // of the entry's first part's message
	lsn   uint64
	buf   []byte // len: the bytes received; cap: the entry's size
}

// take returns m unchanged when it carries no part; for a part, nil until
// the entry is whole, then an Append carrying it with the last part's
// other fields. A part that does not continue the entry being put
// together, or any other message between an entry's parts, is errPart.
func (p *partAssembler) take(m *peerpb.LeaderMessage) (*peerpb.LeaderMessage, error) {
	part := m.GetAppend().GetPart()
	if part == nil {
		if p.buf != nil {
			return nil, fmt.Errorf("%w: %T between the parts of entry %d (%d of %d bytes)", errPart, m.Body, p.lsn, len(p.buf), cap(p.buf))
		}
		return m, nil
	}
	a := m.GetAppend()
	if len(a.Entries) > 0 {
		return nil, fmt.Errorf("%w: an append with entries and a part of entry %d", errPart, part.Lsn)
	}
	if len(part.Data) == 0 || part.Offset+uint64(len(part.Data)) > part.Size {
		return nil, fmt.Errorf("%w: part [%d, +%d) of a %d-byte entry %d", errPart, part.Offset, len(part.Data), part.Size, part.Lsn)
	}
	if p.buf == nil {
		if part.Offset != 0 || part.Size > maxPartedEntry {
			return nil, fmt.Errorf("%w: entry %d begins at byte %d of %d", errPart, part.Lsn, part.Offset, part.Size)
		}
		p.epoch, p.lsn, p.buf = m.Epoch, part.Lsn, make([]byte, 0, part.Size)
	} else if m.Epoch != p.epoch || part.Lsn != p.lsn || part.Size != uint64(cap(p.buf)) || part.Offset != uint64(len(p.buf)) {
		return nil, fmt.Errorf("%w: part (epoch %d, entry %d, bytes %d of %d) while entry %d of epoch %d has %d of %d bytes",
			errPart, m.Epoch, part.Lsn, part.Offset, part.Size, p.lsn, p.epoch, len(p.buf), cap(p.buf))
	}
	p.buf = append(p.buf, part.Data...)
	if len(p.buf) < cap(p.buf) {
		return nil, nil
	}
	whole := p.buf
	*p = partAssembler{}
	return &peerpb.LeaderMessage{Epoch: m.Epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
		Entries:            [][]byte{whole},
		CommitLsn:          a.CommitLsn,
		LeaderLastLsn:      a.LeaderLastLsn,
		LeaderTimeUnixNano: a.LeaderTimeUnixNano,
		LeaseStamp:         a.LeaseStamp,
		LeaseLapsed:        a.LeaseLapsed,
		ReadStamp:          a.ReadStamp,
	}}}, nil
}
