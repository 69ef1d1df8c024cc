package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/dataformat"
	"github.com/tandemdb/tandem/internal/testbin"
)

// A data dir of a newer format: `tandem server` exits 1 and says which
// format the dir is and which this build reads, leaving the dir as it was;
// `tandem status` shows the node down with the same reason.
func TestNewerDataDirRefused(t *testing.T) {
	tandem := testbin.Path(t)
	dir := t.TempDir()
	newer := dataformat.Current + 1
	if err := dataformat.Write(nil, dir, newer); err != nil {
		t.Fatal(err)
	}
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	out, ok := run(t, os.Getenv("PATH"), tandem, "server", "--dir", dir, "--resp-addr", free(), "--peer-addr", free(), "--http-addr", free())
	want := fmt.Sprintf("tandem: dataformat: data dir from a newer format: %s is data dir format %d, and this build reads formats up to %d", dir, newer, dataformat.Current)
	if ok || !strings.Contains(out, want) {
		t.Fatalf("tandem server on a format %d dir: ok %v, want it to fail saying %q:\n%s", newer, ok, want, out)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Fatalf("the refused dir holds %d files, want only the marker", len(names))
	}

	cdir := t.TempDir()
	b, err := json.Marshal(cluster.File{Nodes: []cluster.NodeInfo{{ID: 1, Name: "n1", RESPAddr: free(), HTTPAddr: free(), DataDir: dir}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cdir, cluster.FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = run(t, os.Getenv("PATH"), tandem, "status", "--dir", cdir, "--timeout", "2s")
	if !strings.Contains(out, "down (dataformat: data dir from a newer format: "+dir+" is data dir format") {
		t.Fatalf("tandem status does not say why n1 is down:\n%s", out)
	}
	t.Logf("tandem status:\n%s", out)
}
