package cluster

import (
	"slices"
	"strings"
	"testing"
)

// TestRoute: Config.Route is asked for every node->node peer link, every
// orchestrator->node probe link and every process's etcd endpoint, and
// its answers reach the processes as --peer-route and --etcd; a link it
// leaves alone gets no flag.
func TestRoute(t *testing.T) {
	var asked []string
	c := &Cluster{cfg: Config{
		Nodes: 2, ControlPlane: true, Orchestrators: 1,
		Route: func(from, to, addr string) string {
			asked = append(asked, from+">"+to)
			if from == "n2" && to == "n1" {
				return addr // left direct
			}
			return "127.0.0.1:9" + to[len(to)-1:]
		},
	}, endpoints: []string{"http://127.0.0.1:2379"}}
	for i, name := range []string{"n1", "n2"} {
		c.nodes = append(c.nodes, &member{info: NodeInfo{ID: i + 1, Name: name, PeerAddr: "127.0.0.1:700" + name[1:]}})
	}
	var ports [3][]string
	for kind := range 3 {
		ports[kind] = []string{"a:1", "a:2", "a:3", "a:4"}
	}
	c.declareOrchestrators(ports)
	flags := func(args []string) string {
		var out []string
		for i, a := range args {
			if a == "--peer-route" || a == "--etcd" {
				out = append(out, a+" "+args[i+1])
			}
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct{ got, want string }{
		{flags(c.serverArgs(c.nodes[0].info)), "--etcd http://127.0.0.1:9d --peer-route n2=127.0.0.1:92"},
		{flags(c.serverArgs(c.nodes[1].info)), "--etcd http://127.0.0.1:9d"},
		{flags(c.orchs[0].args), "--etcd http://127.0.0.1:9d --peer-route n1=127.0.0.1:91 --peer-route n2=127.0.0.1:92"},
	} {
		if tc.got != tc.want {
			t.Errorf("flags %q, want %q", tc.got, tc.want)
		}
	}
	for _, want := range []string{"n1>n2", "n2>n1", "o1>n1", "o1>n2", "n1>etcd", "n2>etcd", "o1>etcd"} {
		if !slices.Contains(asked, want) {
			t.Errorf("Route never asked for %s (asked %v)", want, asked)
		}
	}
}
