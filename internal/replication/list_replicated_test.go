package replication

import (
	"context"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/storage"
)

// TestListReplicated: lists reach a seeded follower and a streaming one row
// by row; a pipeline of list writes reads each other through the leader's
// overlay before they apply (pushes at both ends, pops, an LTRIM that moves
// the list to a new version, a rotation, a list emptied and made again);
// every node ends with the same lists.
func TestListReplicated(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	propose(t, l, cmdExec("rpush", "l", "a", "b", "c"))
	f1 := newFollowerNode(t, "f1", vfs.NewMem(), l.dialer)
	waitConverged(t, l, f1)
	var pend []*Pending
	for _, args := range [][]string{
		{"lpush", "l", "z"}, {"rpush", "l", "d", "e", "f", "g"}, {"lpop", "l"}, {"rpop", "l", "2"},
		{"ltrim", "l", "1", "2"}, // keeps 2 of 5: a new version
		{"lpush", "l", "y"}, {"lmove", "l", "l", "right", "left"}, {"linsert", "l", "after", "y", "x"},
		{"rpush", "m", "1"}, {"rpop", "m"}, {"lpush", "m", "2", "3"}, {"lrem", "m", "0", "3"},
	} {
		p, err := l.Start(context.Background(), cmdExec(args...))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
	}
	for _, p := range pend {
		if _, _, err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, l, f1)
	want := map[string]commands.Reply{
		"l": commands.Bulks{[]byte("c"), []byte("y"), []byte("x"), []byte("b")},
		"m": commands.Bulks{[]byte("2")},
	}
	for _, db := range []*storage.DB{l.db, f1.db} {
		for key, w := range want {
			res, err := cmdExec("lrange", key, "0", "-1")(storage.View{DB: db}, 0)
			if err != nil || !reflect.DeepEqual(res.Reply, w) {
				t.Fatalf("LRANGE %s 0 -1 = %#v, %v; want %#v", key, res.Reply, err, w)
			}
		}
	}
}
