package peerpb

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tandemdb/tandem/internal/testutil"
)

func filled(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

// codecCases are LeaderMessages the by-reference path takes and some it
// leaves to gRPC's codec.
func codecCases() map[string]*LeaderMessage {
	app := func(a *Append) *LeaderMessage {
		return &LeaderMessage{Epoch: 7, Body: &LeaderMessage_Append{Append: a}}
	}
	big, huge := filled(refBytes, 'b'), filled(3*refBytes+5, 'h')
	return map[string]*LeaderMessage{
		"heartbeat":       app(&Append{CommitLsn: 9, LeaseStamp: -3}),
		"small entries":   app(&Append{Entries: [][]byte{[]byte("a"), nil, []byte("bc")}, CommitLsn: 4}),
		"one large entry": app(&Append{Entries: [][]byte{huge}, CommitLsn: 1 << 40, LeaderLastLsn: 12, LeaderTimeUnixNano: 99, LeaseStamp: 5, LeaseLapsed: true}),
		"mixed entries":   app(&Append{Entries: [][]byte{[]byte("x"), big, []byte("y"), huge, {}}, CommitLsn: 3}),
		"large part":      app(&Append{Part: &EntryPart{Lsn: 5, Size: 1 << 30, Offset: 4 << 20, Data: huge}, CommitLsn: 4, LeaderLastLsn: 5}),
		"first part":      app(&Append{Part: &EntryPart{Lsn: 5, Size: uint64(len(big)) + 1, Data: big}}),
		"small part":      app(&Append{Part: &EntryPart{Lsn: 5, Size: 10, Offset: 8, Data: []byte("zz")}}),
		"empty part":      app(&Append{Part: &EntryPart{Lsn: 5, Size: 10, Offset: 10}, Entries: [][]byte{big}}),
		"start":           {Epoch: 2, Body: &LeaderMessage_Start{Start: &Start{FromLsn: 3, TakesPublish: true}}},
	}
}

// TestCodecRoundTrip: whatever path Codec takes, protobuf decodes its
// bytes to the message it was given.
func TestCodecRoundTrip(t *testing.T) {
	for name, m := range codecCases() {
		data, err := Codec{}.Marshal(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got LeaderMessage
		if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
			t.Fatalf("%s: unmarshal: %v", name, err)
		}
		if !proto.Equal(&got, m) {
			t.Errorf("%s: decoded %v, want %v", name, &got, m)
		}
		want, _ := proto.Marshal(m)
		if data.Len() != len(want) {
			t.Errorf("%s: %d bytes, protobuf's encoding has %d", name, data.Len(), len(want))
		}
	}
}

// TestCodecSendsLargeFieldsByReference: the large entries and part data
// are the caller's slices in what Codec hands gRPC, not copies of them
// (what makes one entry sent to several followers cost one copy).
func TestCodecSendsLargeFieldsByReference(t *testing.T) {
	for name, m := range codecCases() {
		a := m.GetAppend()
		var large [][]byte
		for _, e := range a.GetEntries() {
			if len(e) >= refBytes {
				large = append(large, e)
			}
		}
		if d := a.GetPart().GetData(); len(d) >= refBytes {
			large = append(large, d)
		}
		data, err := Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range large {
			if !holds(data, field) {
				t.Errorf("%s: a %d-byte field was copied, not referenced", name, len(field))
			}
		}
	}
}

// holds reports whether one of data's buffers is field itself.
func holds(data mem.BufferSlice, field []byte) bool {
	for _, b := range data {
		d := b.ReadOnlyData()
		if len(d) == len(field) && &d[0] == &field[0] {
			return true
		}
	}
	return false
}

// echoPeer answers a Replicate stream with the messages it is given.
type echoPeer struct {
	UnimplementedPeerServer
	send []*LeaderMessage
}

func (p *echoPeer) Replicate(stream grpc.BidiStreamingServer[FollowerMessage, LeaderMessage]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	for _, m := range p.send {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// TestCodecOverGRPC: a gRPC server with Codec sends every case whole to
// a client using gRPC's own codec.
func TestCodecOverGRPC(t *testing.T) {
	cases := codecCases()
	var names []string
	peer := &echoPeer{}
	for name, m := range cases {
		names = append(names, name)
		peer.send = append(peer.send, m)
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(Codec{}))
	RegisterPeerServer(srv, peer)
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := NewPeerClient(conn).Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&FollowerMessage{Body: &FollowerMessage_Hello{Hello: &Hello{NodeId: "f"}}}); err != nil {
		t.Fatal(err)
	}
	for i, want := range peer.send {
		got, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: received %v, want %v", names[i], got, want)
		}
	}
}

// TestCodecAllocatesNoEntryCopy: marshalling an Append of an 8 MiB entry
// allocates a few bytes, not a copy of the entry (gRPC's codec allocates
// the whole message per send, so per follower).
func TestCodecAllocatesNoEntryCopy(t *testing.T) {
	entry := filled(8<<20, 'e')
	m := &LeaderMessage{Epoch: 1, Body: &LeaderMessage_Append{Append: &Append{Entries: [][]byte{entry}, CommitLsn: 1}}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	data, err := Codec{}.Marshal(m)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("marshalling an Append of a %d-byte entry allocated %d bytes", len(entry), n)
	}
	if data.Len() <= len(entry) {
		t.Fatalf("%d bytes marshalled", data.Len())
	}
}

// unmarshalCases are encodings Unmarshal must decode as protobuf does:
// every codecCases message (both encoders), an Append with every field
// unmarshalAppend reads (negative stamps too), and bytes it must leave to
// protobuf (a field it does not know, a field twice, other bodies).
func unmarshalCases(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, m := range codecCases() {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
		data, err := Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out[name+"/codec"] = data.Materialize()
	}
	full := &LeaderMessage{Epoch: 1 << 50, Body: &LeaderMessage_Append{Append: &Append{
		Entries: [][]byte{[]byte("e1"), {}, filled(300, 'x')}, CommitLsn: 7, LeaderLastLsn: 9, LeaderTimeUnixNano: -5,
		LeaseStamp: -1 << 40, LeaseLapsed: true, DeferSync: true, ReadStamp: -2,
	}}}
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	out["every field"] = b
	out["unknown top field"] = protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), b...), 15, protowire.VarintType), 3)
	body := func(extra []byte) []byte {
		a, err := proto.Marshal(full.GetAppend())
		if err != nil {
			t.Fatal(err)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, leaderAppendField, protowire.BytesType), append(a, extra...))
	}
	out["unknown append field"] = body(protowire.AppendVarint(protowire.AppendTag(nil, 20, protowire.VarintType), 1))
	out["commit twice"] = body(protowire.AppendVarint(protowire.AppendTag(nil, appendCommitLSN, protowire.VarintType), 99))
	out["append twice"] = append(body(nil), body(protowire.AppendBytes(protowire.AppendTag(nil, appendEntries, protowire.BytesType), []byte("more")))...)
	out["empty"] = nil
	return out
}

// TestUnmarshalAsProtobuf: Codec.Unmarshal of a LeaderMessage decodes
// what protobuf decodes, and fails where it fails, for every case and
// every prefix and one-byte change of it.
func TestUnmarshalAsProtobuf(t *testing.T) {
	check := func(name string, b []byte) {
		t.Helper()
		var want, got LeaderMessage
		werr := proto.Unmarshal(b, &want)
		gerr := Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%s: protobuf says %v, Codec %v", name, werr, gerr)
		}
		if werr == nil && !proto.Equal(&got, &want) {
			t.Fatalf("%s: Codec decoded %v, protobuf %v", name, &got, &want)
		}
	}
	for name, b := range unmarshalCases(t) {
		check(name, b)
		if len(b) > 4096 {
			continue
		}
		for i := range b {
			check(fmt.Sprintf("%s cut at %d", name, i), b[:i])
			c := append([]byte(nil), b...)
			c[i] ^= 0x41
			check(fmt.Sprintf("%s byte %d changed", name, i), c)
		}
	}
}

// TestUnmarshalAppendKnowsEveryField: the fields unmarshalAppend reads are
// the generated code's, by number and kind, and every field of Append but
// the entry part: a field added to the message is decoded by protobuf
// (unmarshalAppend leaves a field it does not know to it) until it is
// added here too, which this test asks for.
func TestUnmarshalAppendKnowsEveryField(t *testing.T) {
	reads := map[protowire.Number]protoreflect.Kind{
		appendEntries: protoreflect.BytesKind, appendCommitLSN: protoreflect.Uint64Kind, appendLeaderLast: protoreflect.Uint64Kind,
		appendLeaderTime: protoreflect.Int64Kind, appendLeaseStamp: protoreflect.Int64Kind, appendLeaseLapsed: protoreflect.BoolKind,
		appendDeferSync: protoreflect.BoolKind, appendReadStamp: protoreflect.Int64Kind,
	}
	fields := (&Append{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Number() == appendPart {
			continue
		}
		if k, ok := reads[fd.Number()]; !ok || k != fd.Kind() {
			t.Errorf("Append.%s (%d, %v): unmarshalAppend does not read it as such", fd.Name(), fd.Number(), fd.Kind())
		}
		delete(reads, fd.Number())
	}
	for num := range reads {
		t.Errorf("unmarshalAppend reads field %d, which Append does not have", num)
	}
	lm := (&LeaderMessage{}).ProtoReflect().Descriptor().Fields()
	if fd := lm.ByNumber(leaderEpoch); fd == nil || fd.Name() != "epoch" || fd.Kind() != protoreflect.Uint64Kind {
		t.Errorf("LeaderMessage field %d is %v", leaderEpoch, fd)
	}
	if fd := lm.ByNumber(leaderAppendField); fd == nil || fd.Name() != "append" {
		t.Errorf("LeaderMessage field %d is %v", leaderAppendField, fd)
	}
}

// TestUnmarshalAppendAllocations: an Append of 32 entries decodes in a
// few allocations (the message's copy, the Append, its body, the entries'
// slice), not one more per entry, and its entries are slices of the copy
// whose appends cannot run into the next entry.
func TestUnmarshalAppendAllocations(t *testing.T) {
	a := &Append{CommitLsn: 5, DeferSync: true}
	for i := range 32 {
		a.Entries = append(a.Entries, filled(150, byte('a'+i%26)))
	}
	b, err := proto.Marshal(&LeaderMessage{Epoch: 1, Body: &LeaderMessage_Append{Append: a}})
	if err != nil {
		t.Fatal(err)
	}
	var m LeaderMessage
	data := mem.BufferSlice{mem.SliceBuffer(b)}
	allocs := testing.AllocsPerRun(100, func() {
		m = LeaderMessage{}
		if err := (Codec{}).Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 4 {
		t.Fatalf("an Append of 32 entries took %.0f allocations to decode", allocs)
	}
	es := m.GetAppend().GetEntries()
	if len(es) != 32 {
		t.Fatalf("%d entries", len(es))
	}
	_ = append(es[0], 'z')
	if !bytes.Equal(es[1], a.Entries[1]) {
		t.Fatal("an append to an entry changed the next one")
	}
}

// BenchmarkUnmarshalAppend decodes an Append of 32 entries of 150 bytes (a
// busy async leader's message to a follower) with gRPC's protobuf codec and
// with Codec.
//
//	go test ./internal/peerpb -run '^$' -bench UnmarshalAppend -benchmem
func BenchmarkUnmarshalAppend(b *testing.B) {
	a := &Append{CommitLsn: 5, LeaderLastLsn: 40, LeaderTimeUnixNano: 1 << 60, LeaseStamp: 1 << 40, DeferSync: true}
	for i := range 32 {
		a.Entries = append(a.Entries, filled(150, byte('a'+i%26)))
	}
	raw, err := proto.Marshal(&LeaderMessage{Epoch: 1, Body: &LeaderMessage_Append{Append: a}})
	if err != nil {
		b.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(raw)}
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"protobuf", protoCodec()}, {"codec", Codec{}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := testutil.ProcessCPU()
			for b.Loop() {
				var m LeaderMessage
				if err := c.codec.Unmarshal(data, &m); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((testutil.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
