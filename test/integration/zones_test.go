package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
	"github.com/tandemdb/tandem/internal/proc"
	"github.com/tandemdb/tandem/internal/testbin"
	"github.com/tandemdb/tandem/internal/testutil"
)

// zoneNet is two zones on one machine: zone b is the test's own network
// namespace, zone a a network namespace the test creates, joined by a
// veth pair (b's end .1, a's end .2 of a /30) whose ends delay what they
// send with netem, or, where the kernel has no netem, by a pair of TUN
// devices with a delay line in the test process between them. Either way
// a round trip between the zones takes 2×oneWay more than one within a
// zone.
type zoneNet struct {
	ns     string // zone a's namespace
	bIP    string // zone b's address (root namespace)
	aIP    string // zone a's address (in ns)
	delay  string // how the zones are delayed, for the figure
	oneWay time.Duration
}

// ipCmd runs a command (ip, tc); its error carries the output.
func ipCmd(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newZoneNet creates the namespace and the veth pair (removed at cleanup,
// also when the test fails), or skips the test saying why it cannot.
func newZoneNet(t *testing.T, oneWay time.Duration) *zoneNet {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("zones test: needs root for ip netns (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("zones test: no ip command (iproute2) for network namespaces")
	}
	id := os.Getpid() % 100000
	z := &zoneNet{ns: fmt.Sprintf("tandem-za-%d", id), oneWay: oneWay}
	sub := fmt.Sprintf("10.213.%d.", id%250)
	z.bIP, z.aIP = sub+"1", sub+"2"
	vb, va := fmt.Sprintf("tzb%d", id), fmt.Sprintf("tza%d", id)
	if err := ipCmd("ip", "netns", "add", z.ns); err != nil {
		t.Skipf("zones test: ip netns is unavailable here: %v", err)
	}
	t.Cleanup(func() {
		// Deleting one end of a veth pair deletes both (the TUN line
		// replaces it where there is no netem), and a namespace's devices
		// go with it.
		_ = ipCmd("ip", "link", "del", vb)
		if err := ipCmd("ip", "netns", "del", z.ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	inNS := func(args ...string) []string { return append([]string{"ip", "netns", "exec", z.ns}, args...) }
	for _, c := range [][]string{
		{"ip", "link", "add", vb, "type", "veth", "peer", "name", va},
		{"ip", "link", "set", va, "netns", z.ns},
		{"ip", "addr", "add", z.bIP + "/30", "dev", vb},
		{"ip", "link", "set", vb, "up"},
		inNS("ip", "addr", "add", z.aIP+"/30", "dev", va),
		inNS("ip", "link", "set", va, "up"),
		inNS("ip", "link", "set", "lo", "up"),
	} {
		if err := ipCmd(c...); err != nil {
			t.Fatal(err)
		}
	}
	delay := fmt.Sprintf("%dms", oneWay.Milliseconds())
	err := ipCmd("tc", "qdisc", "add", "dev", vb, "root", "netem", "delay", delay)
	if err == nil {
		err = ipCmd(inNS("tc", "qdisc", "add", "dev", va, "root", "netem", "delay", delay)...)
	}
	if err == nil {
		z.delay = "netem delay " + delay + " each way"
		return z
	}
	// Some kernels (this project's VMs among them) lack sch_netem: join
	// the zones with a delay line in this process instead, two TUN
	// devices whose packets it carries across after oneWay.
	t.Logf("netem is unavailable (%v): a userspace delay line joins the zones", err)
	if err := ipCmd("ip", "link", "del", vb); err != nil {
		t.Fatal(err)
	}
	if err := z.tunLine(t, id, inNS); err != nil {
		// Routing is what the test checks; the delay only makes the
		// figure.
		t.Logf("NO DELAY BETWEEN ZONES: no TUN delay line either (%v); a plain veth pair joins them", err)
		for _, c := range [][]string{
			{"ip", "link", "add", vb, "type", "veth", "peer", "name", va},
			{"ip", "link", "set", va, "netns", z.ns},
			{"ip", "addr", "add", z.bIP + "/30", "dev", vb},
			{"ip", "link", "set", vb, "up"},
			inNS("ip", "addr", "add", z.aIP+"/30", "dev", va),
			inNS("ip", "link", "set", va, "up"),
		} {
			if err := ipCmd(c...); err != nil {
				t.Fatal(err)
			}
		}
		z.delay = "NO delay between zones (neither netem nor TUN here)"
		return z
	}
	z.delay = fmt.Sprintf("a TUN delay line of %v each way (no netem in this kernel)", oneWay)
	return z
}

// tunLine joins the zones with two TUN devices, tub<id> in zone b and
// tua<id> in zone a, and goroutines that carry each packet from one to
// the other oneWay after it was sent, in order; all removed at cleanup.
func (z *zoneNet) tunLine(t *testing.T, id int, inNS func(...string) []string) error {
	tb, ta := fmt.Sprintf("tub%d", id), fmt.Sprintf("tua%d", id)
	var files []*os.File
	for _, name := range []string{tb, ta} {
		if err := ipCmd("ip", "tuntap", "add", "dev", name, "mode", "tun"); err != nil {
			return err
		}
		t.Cleanup(func() { _ = ipCmd("ip", "link", "del", name) }) // zone a's goes with its namespace
		f, err := openTun(name)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
		wg.Wait()
	})
	for _, c := range [][]string{
		{"ip", "link", "set", ta, "netns", z.ns},
		{"ip", "addr", "add", z.bIP, "peer", z.aIP, "dev", tb},
		{"ip", "link", "set", tb, "up"},
		inNS("ip", "addr", "add", z.aIP, "peer", z.bIP, "dev", ta),
		inNS("ip", "link", "set", ta, "up"),
	} {
		if err := ipCmd(c...); err != nil {
			return err
		}
	}
	carry := func(from, to *os.File) {
		type packet struct {
			due time.Time
			b   []byte
		}
		queue := make(chan packet, 4096)
		wg.Go(func() {
			defer close(queue)
			buf := make([]byte, 65536)
			for {
				n, err := from.Read(buf)
				if err != nil {
					return
				}
				select {
				case queue <- packet{time.Now().Add(z.oneWay), append([]byte(nil), buf[:n]...)}:
				default: // a full line drops, as a full queue would
				}
			}
		})
		wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			for p := range queue {
				if d := time.Until(p.due); d > 0 {
					timer.Reset(d)
					<-timer.C
				}
				_, _ = to.Write(p.b)
			}
		})
	}
	carry(files[0], files[1])
	carry(files[1], files[0])
	return nil
}

// openTun attaches to the TUN device name (IFF_TUN|IFF_NO_PI: bare IP
// packets). The descriptor is made non-blocking before os.NewFile, so
// its reads go through the runtime's poller and Close ends them (a file
// opened with os.OpenFile and then attached never reports readable).
func openTun(name string) (*os.File, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	const (
		tunSetIff = 0x400454ca
		iffTun    = 0x0001
		iffNoPI   = 0x1000
	)
	var req [40]byte // struct ifreq: the name, then the flags
	copy(req[:15], name)
	binary.NativeEndian.PutUint16(req[16:], iffTun|iffNoPI)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// start runs a tandem process in zone a (inA) or b; it is stopped at
// cleanup and its log shown if the test failed.
func (z *zoneNet) start(t *testing.T, dir, name string, inA bool, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{testbin.Path(t)}, args...)
	if inA {
		// ip netns exec execs the binary: the pid is tandem's.
		argv = append([]string{"ip", "netns", "exec", z.ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := proc.Start(cmd, logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(5 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- log of %s ---\n%s", name, tail(string(b), 30))
		}
	})
}

// p50 is the median of ds.
func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestZones runs two zones in network namespaces with netem delay
// between them: zone a (its own namespace) holds n2 and n3, zone b (the
// test's namespace) n1, etcd, the orchestrator (--preferred-zone a) and
// a proxy in zone b. It checks routing, not timing:
//   - the first leader is chosen in the preferred zone (n2; without the
//     preference, the lowest id n1 would be, all being equal);
//   - through the proxy, reads under any are served by the follower in the
//     proxy's zone (n1), none counted cross-zone;
//   - reads under leader are served by the leader in zone a, each counted
//     cross-zone, and writes reach it.
//
// It logs the read p50 through the proxy in-zone and cross-zone.
func TestZones(t *testing.T) {
	const oneWay = 10 * time.Millisecond
	z := newZoneNet(t, oneWay)
	dir := t.TempDir()
	// Ports free on loopback are taken on the zones' addresses too; zone
	// a's namespace has nothing else listening.
	ports, err := proc.FreePorts(16)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ip string, i int) string { return net.JoinHostPort(ip, strconv.Itoa(ports[i])) }
	e, err := embedded.Start(filepath.Join(dir, "etcd"), at(z.bIP, 0), at(z.bIP, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := coord.Dial([]string{e.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	store := coord.New(cli, "tandem")

	type nodeAt struct {
		name, zone string
		resp       string
	}
	var nodes []nodeAt
	for i, zone := range []string{"b", "a", "a"} {
		name := "n" + strconv.Itoa(i+1)
		ip := z.bIP
		if zone == "a" {
			ip = z.aIP
		}
		k := 2 + 3*i
		nodes = append(nodes, nodeAt{name, zone, at(ip, k)})
		z.start(t, dir, name, zone == "a", "server", "--id", name, "--dir", filepath.Join(dir, name),
			"--resp-addr", at(ip, k), "--peer-addr", at(ip, k+1), "--http-addr", at(ip, k+2),
			"--etcd", e.Endpoint, "--zone", zone, "--log-level", "warn")
	}
	z.start(t, dir, "o1", false, "orchestrator", "--id", "o1", "--etcd", e.Endpoint, "--http-addr", at(z.bIP, 11),
		"--sentinel-addr", "", "--preferred-zone", "a", "--log-level", "warn")
	proxyAddr := at(z.bIP, 12)
	z.start(t, dir, "p1", false, "proxy", "--etcd", e.Endpoint, "--addr", proxyAddr, "--http-addr", at(z.bIP, 13),
		"--zone", "b", "--policy", "any", "--log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := cluster.WaitReady(ctx, n.resp); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	if err := cluster.WaitReady(ctx, proxyAddr); err != nil {
		t.Fatalf("proxy: %v", err)
	}

	// The first leader, in the preferred zone.
	var top coord.Topology
	testutil.Eventually(t, "a leader", 20*time.Second, func() (bool, string) {
		var ok bool
		top, ok, err = store.Topology(ctx)
		return err == nil && ok && top.Leader != "", fmt.Sprint(top, err)
	})
	if top.Leader != "n2" {
		t.Fatalf("the first leader is %s; with --preferred-zone a it must be n2 (zone a's lowest id), not n1 (zone b)", top.Leader)
	}

	pc := redis.NewClient(&redis.Options{Addr: proxyAddr, Protocol: 2, MaxRetries: -1, PoolSize: 1})
	defer pc.Close()
	if err := pc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}
	n1 := redis.NewClient(&redis.Options{Addr: nodes[0].resp, Protocol: 2, MaxRetries: -1})
	defer n1.Close()
	testutil.Eventually(t, "n1 has k", 10*time.Second, func() (bool, string) {
		v, err := n1.Get(ctx, "k").Result()
		return err == nil && v == "v", fmt.Sprint(v, err)
	})
	// The proxy has the leader and both followers up.
	testutil.Eventually(t, "the proxy sees every node up", 10*time.Second, func() (bool, string) {
		info := proxyInfo(t, pc)
		for _, n := range nodes {
			if !strings.Contains(info["node_"+n.name], "state=up") {
				return false, n.name + ": " + info["node_"+n.name]
			}
		}
		return info["leader"] == "n2", "leader " + info["leader"]
	})

	const reads = 200
	measure := func(policy string) []time.Duration {
		if err := pc.Do(ctx, "TANDEM.READPOLICY", policy).Err(); err != nil {
			t.Fatal(err)
		}
		ds := make([]time.Duration, 0, reads)
		for range reads {
			start := time.Now()
			v, err := pc.Get(ctx, "k").Result()
			ds = append(ds, time.Since(start))
			if err != nil || v != "v" {
				t.Fatalf("GET under %s = %q, %v", policy, v, err)
			}
		}
		return ds
	}
	before := proxyInfo(t, pc)
	inZone := measure("any")
	mid := proxyInfo(t, pc)
	crossZone := measure("leader")
	after := proxyInfo(t, pc)
	delta := func(a, b map[string]string, k string) int { return infoInt(b, k) - infoInt(a, k) }

	if got := delta(before, mid, "reads_node_n1"); got != reads {
		t.Errorf("under any, the follower in the proxy's zone (n1) served %d of %d reads (n3 in zone a: %d)", got, reads, delta(before, mid, "reads_node_n3"))
	}
	if got := delta(before, mid, "reads_cross_zone"); got != 0 {
		t.Errorf("under any, %d reads were counted cross-zone; want 0", got)
	}
	if got := delta(mid, after, "reads_node_n2"); got != reads {
		t.Errorf("under leader, the leader (n2, zone a) served %d of %d reads", got, reads)
	}
	if got := delta(mid, after, "reads_cross_zone"); got != reads {
		t.Errorf("under leader, %d reads were counted cross-zone; want %d", got, reads)
	}
	// The proxy's /status (what tandem status shows) counts them too.
	if ps, err := cluster.FetchProxyStatus(ctx, at(z.bIP, 13)); err != nil || ps.Zone != "b" || ps.ReadsCrossZone != uint64(infoInt(after, "reads_cross_zone")) {
		t.Errorf("proxy /status = %+v, %v; want zone b and %s cross-zone reads", ps, err, after["reads_cross_zone"])
	}
	t.Logf("read p50 through the proxy in zone b: in-zone follower %v, cross-zone leader %v (%s; %d reads each)",
		p50(inZone).Round(10*time.Microsecond), p50(crossZone).Round(10*time.Microsecond), z.delay, reads)
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("out of time: %v", err)
	}
}
