package commands

import (
	"fmt"
	"strings"
	"testing"
)

// TestObjectAndTouch: OBJECT's subcommands and TOUCH, their replies and
// errors checked against Redis 7.0.15 by hand (redis-cli against both
// servers, the same commands), but for IDLETIME, which tandem cannot
// answer (no access time is kept) and says so.
func TestObjectAndTouch(t *testing.T) {
	v := newMem(now)
	for _, s := range []struct {
		args string
		want Reply
	}{
		{"SET k 1", OK},
		{"TOUCH k k nokey", Int(2)},
		{"OBJECT ENCODING k", Bulk("int")},
		{"OBJECT encoding nokey", Null},
		{"OBJECT REFCOUNT k", Int(1)},
		{"OBJECT REFCOUNT nokey", Null},
		{"OBJECT FREQ k", ErrorReply("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")},
		{"OBJECT FREQ nokey", Null},
		{"OBJECT IDLETIME nokey", Null},
		{"OBJECT IDLETIME k", ErrorReply("ERR tandem keeps no access time (it evicts nothing): OBJECT IDLETIME is not available")},
		{"OBJECT ENCODING", ErrorReply("ERR wrong number of arguments for 'object|encoding' command")},
		{"OBJECT ENCODING k x", ErrorReply("ERR wrong number of arguments for 'object|encoding' command")},
		{"OBJECT HELP x", ErrorReply("ERR wrong number of arguments for 'object|help' command")},
		{"OBJECT foo", ErrorReply("ERR unknown subcommand 'foo'. Try OBJECT HELP.")},
	} {
		if got := do(t, v, strings.Fields(s.args)...); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("%s = %v, want %v", s.args, got, s.want)
		}
	}
	help, ok := do(t, v, "OBJECT", "help").(Array)
	if !ok || len(help) != 15 || help[0] != SimpleString("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:") {
		t.Fatalf("OBJECT HELP = %v", help)
	}
}
