package peerpb

import (
	"fmt"
	"slices"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec is the gRPC codec of a node's Peer server (grpc.ForceServerCodecV2).
// It writes the protobuf wire format, as gRPC's own codec does, with one
// difference: a LeaderMessage's Append sends its large byte fields (log
// entries, an entry part's data) by reference. The message gRPC writes out
// is a list of buffers whose large ones are the caller's own slices, so a
// leader streaming one entry to several followers sends the one copy of its
// bytes it holds (its tail cache's) to every one of them, where gRPC's
// codec would marshal a copy of the entry per follower per send. The
// caller must not change those slices until the send has returned (log
// entries never change). On the receiving side (a follower's client
// connection, grpc.ForceCodecV2) an Append's entries are decoded as slices
// of one copy of the message rather than a copy each (Unmarshal).
// Everything else is gRPC's codec.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// refBytes: a byte field at least this long is sent by reference; shorter
// ones are copied into the message's own buffers (a buffer per field
// would cost more than the copy).
const refBytes = 16 << 10

// Name is gRPC's codec name: the wire format is protobuf's.
func (Codec) Name() string { return grpcproto.Name }

// Marshal encodes v: a LeaderMessage carrying an Append with a large byte
// field by reference, anything else with gRPC's protobuf codec.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*LeaderMessage); ok {
		if a := m.GetAppend(); a != nil && hasLarge(a) {
			return marshalAppend(m, a)
		}
	}
	return protoCodec().Marshal(v)
}

// Unmarshal decodes data: a LeaderMessage carrying an Append of entries
// into one copy of the message, whose entries are slices of it
// (unmarshalAppend), anything else with gRPC's protobuf codec.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*LeaderMessage); ok {
		// gRPC frees data's buffers once this returns: the message's
		// bytes are copied once, here, and what m keeps points into
		// that copy.
		b := data.Materialize()
		if unmarshalAppend(b, m) {
			return nil
		}
		if err := proto.Unmarshal(b, m); err != nil {
			return fmt.Errorf("peerpb: unmarshal leader message: %w", err)
		}
		return nil
	}
	return protoCodec().Unmarshal(data, v)
}

// unmarshalAppend decodes b into m if it is an Append of entries (the
// stream's bulk: a follower's every message under writes) and reports
// whether it did. Each entry is a slice of b, capacity capped at its
// length, where protobuf's decoder makes a copy of each: one allocation
// per message, not one per entry. Anything else it leaves to protobuf (it
// returns false having set nothing): another body, an entry part (one per
// large entry), a field it does not know (a newer leader's) or one seen
// twice, and malformed bytes (protobuf reports them).
func unmarshalAppend(b []byte, m *LeaderMessage) bool {
	var epoch uint64
	var body []byte
	for seen := 0; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == leaderEpoch && typ == protowire.VarintType && seen&1 == 0:
			epoch, n = protowire.ConsumeVarint(b)
			seen |= 1
		case num == leaderAppendField && typ == protowire.BytesType && seen&2 == 0:
			body, n = protowire.ConsumeBytes(b)
			seen |= 2
		default:
			return false
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	if body == nil {
		return false
	}
	a := &Append{}
	entries := 0
	for pass := 0; pass < 2; pass++ {
		if pass == 1 && entries > 0 {
			a.Entries = make([][]byte, 0, entries)
		}
		var seen uint32
		for rest := body; len(rest) > 0; {
			num, typ, n := protowire.ConsumeTag(rest)
			if n < 0 || num > 31 {
				return false
			}
			rest = rest[n:]
			if num != appendEntries {
				if seen&(1<<num) != 0 {
					return false
				}
				seen |= 1 << num
			}
			var v uint64
			switch {
			case num == appendEntries && typ == protowire.BytesType:
				var e []byte
				if e, n = protowire.ConsumeBytes(rest); n >= 0 {
					if pass == 0 {
						entries++
					} else {
						a.Entries = append(a.Entries, e[:len(e):len(e)])
					}
				}
			case typ == protowire.VarintType && num >= appendCommitLSN && num <= appendReadStamp && num != appendPart:
				v, n = protowire.ConsumeVarint(rest)
			default:
				return false
			}
			if n < 0 {
				return false
			}
			rest = rest[n:]
			if pass == 0 {
				continue
			}
			switch num {
			case appendCommitLSN:
				a.CommitLsn = v
			case appendLeaderLast:
				a.LeaderLastLsn = v
			case appendLeaderTime:
				a.LeaderTimeUnixNano = int64(v)
			case appendLeaseStamp:
				a.LeaseStamp = int64(v)
			case appendLeaseLapsed:
				a.LeaseLapsed = protowire.DecodeBool(v)
			case appendDeferSync:
				a.DeferSync = protowire.DecodeBool(v)
			case appendReadStamp:
				a.ReadStamp = int64(v)
			}
		}
	}
	m.Epoch = epoch
	m.Body = &LeaderMessage_Append{Append: a}
	return true
}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

func hasLarge(a *Append) bool {
	if len(a.GetPart().GetData()) >= refBytes {
		return true
	}
	for _, e := range a.Entries {
		if len(e) >= refBytes {
			return true
		}
	}
	return false
}

// Field numbers the by-reference encoding writes itself, and those
// unmarshalAppend reads itself (TestUnmarshalAppendKnowsEveryField holds
// them to the generated code's).
const (
	leaderEpoch       = 1 // LeaderMessage.epoch
	leaderAppendField = 5 // LeaderMessage.append
	appendEntries     = 1 // Append.entries
	appendCommitLSN   = 2 // Append.commit_lsn
	appendLeaderLast  = 3 // Append.leader_last_lsn
	appendLeaderTime  = 4 // Append.leader_time_unix_nano
	appendLeaseStamp  = 5 // Append.lease_stamp
	appendLeaseLapsed = 6 // Append.lease_lapsed
	appendPart        = 7 // Append.part
	appendDeferSync   = 8 // Append.defer_sync
	appendReadStamp   = 9 // Append.read_stamp
	partData          = 4 // EntryPart.data
)

// marshalAppend writes m as protobuf does, but with the Append's entries
// and part data, large ones as buffers of their own that are the caller's
// slices. The fields marshalled by proto come first and the byte fields
// after (a parser takes a message's fields in any order, and keeps the
// order of a repeated field's elements), so the result decodes to m.
func marshalAppend(m *LeaderMessage, a *Append) (mem.BufferSlice, error) {
	head, err := proto.Marshal(without(m, leaderAppendField))
	if err != nil {
		return nil, fmt.Errorf("peerpb: marshal leader message: %w", err)
	}
	rest, err := proto.Marshal(without(a, appendEntries, appendPart))
	if err != nil {
		return nil, fmt.Errorf("peerpb: marshal append: %w", err)
	}
	var partHead []byte
	partLen := 0 // the part's encoding, its data included
	if a.Part != nil {
		if partHead, err = proto.Marshal(without(a.Part, partData)); err != nil {
			return nil, fmt.Errorf("peerpb: marshal entry part: %w", err)
		}
		partLen = len(partHead)
		if len(a.Part.Data) > 0 {
			partLen += protowire.SizeTag(partData) + protowire.SizeBytes(len(a.Part.Data))
		}
	}
	appendLen := len(rest)
	for _, e := range a.Entries {
		appendLen += protowire.SizeTag(appendEntries) + protowire.SizeBytes(len(e))
	}
	if a.Part != nil {
		appendLen += protowire.SizeTag(appendPart) + protowire.SizeBytes(partLen)
	}

	var out mem.BufferSlice
	b := head
	b = protowire.AppendTag(b, leaderAppendField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(appendLen))
	b = append(b, rest...)
	// field appends one byte field: copied into b when short, else its
	// length prefix ends b, which goes out, and the slice itself follows.
	field := func(num protowire.Number, data []byte) {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		if len(data) < refBytes {
			b = protowire.AppendBytes(b, data)
			return
		}
		b = protowire.AppendVarint(b, uint64(len(data)))
		out = append(out, mem.SliceBuffer(b), mem.SliceBuffer(data))
		b = nil
	}
	for _, e := range a.Entries {
		field(appendEntries, e)
	}
	if a.Part != nil {
		b = protowire.AppendTag(b, appendPart, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(partLen))
		b = append(b, partHead...)
		if len(a.Part.Data) > 0 {
			field(partData, a.Part.Data)
		}
	}
	if len(b) > 0 {
		out = append(out, mem.SliceBuffer(b))
	}
	return out, nil
}

// without returns a shallow copy of m without the fields numbered nums:
// the other fields, and unknown ones, are m's own values (byte slices and
// messages shared, not copied).
func without(m proto.Message, nums ...protowire.Number) proto.Message {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !slices.Contains(nums, fd.Number()) {
			dst.Set(fd, v)
		}
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(u)
	}
	return dst.Interface()
}
