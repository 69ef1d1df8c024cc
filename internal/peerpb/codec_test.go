package peerpb

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
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
