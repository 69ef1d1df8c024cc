package commands

import "testing"

// TestResolve: FUNCTION's spec follows its subcommand (writes through the
// log, reads on any node, KILL and HELP the node's own); other names are
// Lookup's.
func TestResolve(t *testing.T) {
	for _, c := range []struct {
		args []string
		want *Spec
	}{
		{[]string{"function", "load", "code"}, FunctionWrite},
		{[]string{"FUNCTION", "Delete", "lib"}, FunctionWrite},
		{[]string{"function", "flush"}, FunctionWrite},
		{[]string{"function", "restore", "p"}, FunctionWrite},
		{[]string{"function", "list"}, FunctionRead},
		{[]string{"function", "dump"}, FunctionRead},
		{[]string{"function", "stats"}, FunctionRead},
		{[]string{"function", "nosuch"}, FunctionRead},
		{[]string{"function"}, FunctionRead},
		{[]string{"function", "kill"}, nil},
		{[]string{"function", "help"}, nil},
		{[]string{"functions", "load"}, nil},
		{[]string{"nosuch"}, nil},
	} {
		args := make([][]byte, len(c.args))
		for i, a := range c.args {
			args[i] = []byte(a)
		}
		got, ok := Resolve(args)
		if got != c.want || ok != (c.want != nil) {
			t.Errorf("Resolve(%q) = %v, %v; want %v", c.args, got, ok, c.want)
		}
	}
	get, _ := Lookup([]byte("get"))
	if got, ok := Resolve([][]byte{[]byte("GET"), []byte("k")}); got != get || !ok {
		t.Errorf("Resolve(GET k) = %v, %v", got, ok)
	}
}
