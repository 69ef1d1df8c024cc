package resp

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/tidwall/redcon"
)

// Large arguments
//
// redcon reads a command into its buffer, doubling the buffer until the
// command fits, and then copies the command out (Command.Raw): a 64 MB
// SET took a 128 MB buffer, the 64 MB one it outgrew while copying, and
// the 64 MB copy, about four times the value at the peak. So the guard
// reads a command with an argument of at least bigArgLen bytes itself,
// every argument into a buffer of its exact size, and hands redcon a
// stand-in in its place: a one-argument command whose argument is the
// connection's bigTag (random per connection, so a client cannot send it
// by chance or on purpose). The connection's goroutine swaps the stand-in
// for the arguments (takeBig: serveCommand, and a detached connection's
// reads), in order: stand-ins reach redcon in the order their commands
// came, and big is a queue.
//
// The guard takes a command over only when the command starts in the
// bytes of the current Read (it always does unless redcon's free buffer
// was smaller than the command's header); otherwise redcon reads it as
// before. The framer has checked the command's header and the large
// bulk's length against the limits; readBig checks the rest as the framer
// would.

// bigArgLen: a command with an argument this long or longer is read by
// the guard (the size past which keyspace keeps a string in chunks).
const bigArgLen = 1 << 20

var (
	// errBigBulk is the framer's signal: a bulk of at least bigAt bytes.
	errBigBulk = errors.New("resp: large bulk")
	// errBigTaken is feedBig's: the guard read the command itself.
	errBigTaken = errors.New("resp: large command read by the guard")
)

func newBigTag() []byte {
	var b [16]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand's documented promise)
	return []byte("tandem-large-command:" + hex.EncodeToString(b[:]))
}

// feedBig frames p[total:total+n] as feed does, keeping *cmdStart (where
// in p the command being read started, -1: before p) up to date, and
// reads a command with a large argument itself (readBig) when it starts
// in p: then it returns errBigTaken, and end is where the complete
// commands before it end.
func (g *guardConn) feedBig(p []byte, total, n int, cmdStart *int) (end int, err error) {
	if g.bigTag == nil {
		return g.f.feed(p[total : total+n])
	}
	g.f.bigAt = bigArgLen
	defer func() { g.f.bigAt = 0 }()
	off := 0 // fed so far, from total
	for {
		e, err := g.f.feed(p[total+off : total+n])
		if g.f.startAt >= 0 {
			*cmdStart = total + off + g.f.startAt
		}
		if e > 0 {
			end = off + e
		}
		if err != errBigBulk {
			return end, err
		}
		hdr := total + off + g.f.hdrEnd
		if *cmdStart < 0 {
			off = hdr - total // redcon has the command's start: frame on
			continue
		}
		g.readBig(p[*cmdStart:hdr], p[hdr:total+n])
		return end, errBigTaken
	}
}

// afterBig returns what Read returns once readBig ran, lastEnd being the
// end of the complete commands before the large one: those first; the
// stand-in (or the error) on the Read after.
func (g *guardConn) afterBig(p []byte, lastEnd int) (int, error) {
	if lastEnd > 0 {
		return lastEnd, nil
	}
	return g.Read(p)
}

// readBig reads the rest of a command with a large argument: head is the
// command up to the end of that argument's header, after is what was read
// past it. It queues the arguments and holds the stand-in and whatever
// came after the command for redcon; or records the violation (g.err) or
// the read error (g.heldErr) for the next Read.
func (g *guardConn) readBig(head, after []byte) {
	args, bigLen, err := parseBigHead(head)
	if err != nil { // the framer passed it: cannot happen
		g.err = &protocolError{err.Error()}
		return
	}
	rest := bytes.NewReader(after)
	br := bufio.NewReaderSize(io.MultiReader(rest, g.Conn), 4096)
	cmdLen := int64(len(head))
	left := cap(args) - len(args) // arguments still to read, the large one first
	l := bigLen
	for {
		cmdLen += l + 2
		arg := make([]byte, l)
		if _, err := io.ReadFull(br, arg); err != nil {
			g.heldErr = err
			return
		}
		if err := expectCRLF(br); err != nil {
			g.setBigErr(err)
			return
		}
		args = append(args, arg)
		if left--; left == 0 {
			break
		}
		var hl int64
		if l, hl, err = readBulkHeader(br, g.f.lim); err != nil {
			g.setBigErr(err)
			return
		}
		if cmdLen += hl; cmdLen+l+2 > g.f.lim.maxCommand {
			g.err = errCommandTooBig
			return
		}
	}
	g.big = append(g.big, args)
	// The framer starts afresh after the command; what came after it
	// (what br read ahead, then what it did not read of after) is read
	// again as if from the socket (unfed), so a large command in it is
	// taken over too.
	g.f.state, g.f.cmdLen = fsStart, 0
	g.f.done++
	standIn := fmt.Appendf(nil, "*1\r\n$%d\r\n%s\r\n", len(g.bigTag), g.bigTag)
	g.heldBuf = append(g.heldBuf[:0], standIn...)
	g.held, g.heldEnd = g.heldBuf, len(standIn)
	ahead, _ := br.Peek(br.Buffered())
	g.unfed = append(append(g.unfed[:0:0], ahead...), after[len(after)-rest.Len():]...)
}

// readConn reads what readBig read past its command first, then the
// socket.
//
// The socket's read is Go's: a read(2), and when it finds nothing
// (EAGAIN, about one per request of a client that waits for each reply:
// a SET costs the leader 2 reads and 1 write where Redis makes 1 and 1)
// a park on the poller and a second read(2). That read stays, because
// no cheaper correct way around it exists here:
//
//   - Skipping it after a short read (RawRead with a function that first
//     returns false, to wait for readiness) loses commands: RawRead clears
//     the poller's readiness mark before it calls its function, so bytes
//     that arrived, and were reported, between the short read and the
//     park (a client that sends its next command before the reply) leave
//     the connection parked with them unread, for good.
//     Not only a pipelining client's: a GET's reply is written by the
//     connection's goroutine before it reads again, so a client that waits
//     for each reply sends its next command inside that window. Built with
//     the skip, a 3-node cluster under redis-benchmark -c 50 -P 1 (load
//     28–33) read 1.20–1.27 times per SET on the leader instead of
//     2.25–2.37, and its GET run hung. TestRawReadForgetsReadiness pins
//     that Go behaviour (it fails if Go ever keeps the mark);
//     TestNextCommandBeforeTheReply and TestPipelineLargerThanTheReadBuffer
//     fail with that skip planted.
//   - A goroutine of its own per connection parked inside one RawRead
//     (which keeps the mark between its calls) hands each read over: two
//     goroutine hand-offs per request, which cost more than the read.
//   - Serving the commands inside one RawRead's function means our own
//     serve loop instead of redcon's, and then the function holds the
//     socket's read lock while a command blocks: the watch's background
//     Read (watch.go) cannot run, and Close from any other goroutine (an
//     owed reply's writer, Server.Close) waits until the command ends.
//
// And it is cheap: a read(2) that finds nothing costs ~0.2 µs of CPU
// here (a loop of them on a loopback socket), against a leader's 20–24
// µs per SET at -P 1; the build with the skip, on a quiet machine (load
// 3.7, both at 37k SET/s), cost the leader 19.8 µs per SET against 18.6
// without it: no gain above the noise. In the leader's CPU profile under SET (c=50, load
// ~25) every read(2) together, data and EAGAIN, client and peers, is
// 6.5% of its CPU; the system call time is the replies' write(2)s (18%:
// on loopback the write runs the client's side of TCP too) and the log's
// fdatasync (8%), both once per request or group, as Redis's are.
func (g *guardConn) readConn(p []byte) (int, error) {
	if len(g.unfed) > 0 {
		n := copy(p, g.unfed)
		g.unfed = g.unfed[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// setBigErr records a violation, or a read error, met in readBig.
func (g *guardConn) setBigErr(err error) {
	var perr *protocolError
	if errors.As(err, &perr) {
		g.err = perr
		return
	}
	g.heldErr = err
}

// parseBigHead parses a multibulk command up to the end of its first
// large argument's header (the framer checked it): the arguments before
// that one (copies; the slice has room for every argument) and its length.
func parseBigHead(b []byte) (args [][]byte, bigLen int64, err error) {
	r := bytes.NewReader(b)
	if c, _ := r.ReadByte(); c != '*' {
		return nil, 0, errors.New("expected '*'")
	}
	n, _, err := readNum(r)
	if err != nil {
		return nil, 0, err
	}
	args = make([][]byte, 0, n)
	for {
		l, _, err := readBulkHeader(r, limits{maxBulk: 1 << 62, maxCommand: 1 << 62})
		if err != nil {
			return nil, 0, err
		}
		if r.Len() == 0 {
			return args, l, nil // the large argument's header
		}
		arg := make([]byte, l)
		if _, err := io.ReadFull(r, arg); err != nil {
			return nil, 0, err
		}
		if err := expectCRLF(r); err != nil {
			return nil, 0, err
		}
		args = append(args, arg)
	}
}

// readBulkHeader reads "$<n>\r\n", checked against lim's bulk bound: n
// and the header's length.
func readBulkHeader(r io.ByteReader, lim limits) (n, hdrLen int64, err error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	if c != '$' {
		return 0, 0, &protocolError{"expected '$', got '" + string(c) + "'"}
	}
	n, digits, err := readNum(r)
	if err != nil {
		return 0, 0, err
	}
	if n > lim.maxBulk {
		return 0, 0, errBadBulkLen
	}
	return n, int64(digits) + 3, nil
}

// readNum reads a non-negative header number and its "\r\n".
func readNum(r io.ByteReader) (n int64, digits int, err error) {
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		if c == '\r' {
			break
		}
		if c < '0' || c > '9' || digits == maxNumLen {
			return 0, 0, errBadBulkLen
		}
		n = n*10 + int64(c-'0')
		digits++
	}
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	if c != '\n' || digits == 0 {
		return 0, 0, errBadBulkLen
	}
	return n, digits, nil
}

func expectCRLF(r io.ByteReader) error {
	for _, want := range []byte{'\r', '\n'} {
		c, err := r.ReadByte()
		if err != nil {
			return err
		}
		if c != want {
			return errBadBulkLen
		}
	}
	return nil
}

// takeBig returns the arguments a stand-in stands for, or args when they
// are not a stand-in. Only the connection's goroutine calls it.
func (g *guardConn) takeBig(args [][]byte) [][]byte {
	if !g.standIn(args) {
		return args
	}
	a := g.big[0]
	g.big[0] = nil
	g.big = g.big[1:]
	return a
}

// standIn reports whether args are a stand-in with arguments queued.
func (g *guardConn) standIn(args [][]byte) bool {
	return g != nil && len(g.big) > 0 && len(args) == 1 && bytes.Equal(args[0], g.bigTag)
}

// takeBigCmd is takeBig for a whole command: a stand-in's Raw becomes
// the command's own encoding (a copy: the proxy relays a detached
// connection's commands as they came).
func (g *guardConn) takeBigCmd(cmd *redcon.Command) {
	if !g.standIn(cmd.Args) {
		return
	}
	args := g.takeBig(cmd.Args)
	cmd.Args = args
	raw := redcon.AppendArray(nil, len(args))
	for _, a := range args {
		raw = redcon.AppendBulk(raw, a)
	}
	cmd.Raw = raw
}

// bigDetached is a detached connection whose reads take stand-ins'
// arguments (the guard keeps reading large commands itself).
type bigDetached struct {
	redcon.DetachedConn
	g *guardConn
}

func (d bigDetached) ReadCommand() (redcon.Command, error) {
	cmd, err := d.DetachedConn.ReadCommand()
	if err == nil {
		d.g.takeBigCmd(&cmd)
	}
	return cmd, err
}
