package failbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bulkStats is what a bulk load's streams saw.
type bulkStats struct {
	replies, errors int
	// elapsed is from the first dial to the load's end.
	elapsed time.Duration
}

// bulkValueSize is a bulk-load value's size, redis-benchmark's -d 100.
const bulkValueSize = 100

// bulkLoad is bench/run.sh's bulk load (LOAD_STREAMS `redis-cli --pipe`
// streams) for d: streams connections to addr, each writing SET
// bulk:<n> <100 bytes> as fast as the server reads them, never waiting for
// a reply (a reader beside counts them), n running over the stream's share
// of keys keys and round again; a stream flushes at 60 KiB and at the end
// of each round (so a small key space is written whole at once).
// redis-cli --pipe does exactly this with a file; here the commands are
// made on the fly, so the phase is bounded in time and not in keys. It returns the replies read and how many were
// errors; an error if a stream could not dial or its connection failed
// before d ended.
func bulkLoad(ctx context.Context, addr string, streams, keys int, d time.Duration) (bulkStats, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	streams, keys = max(streams, 1), max(keys, streams)
	start := time.Now()
	var (
		replies, errs atomic.Int64
		wg            sync.WaitGroup
		mu            sync.Mutex
		firstErr      error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil && ctx.Err() == nil {
			firstErr = err
		}
	}
	for j := range streams {
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			fail(fmt.Errorf("saturation: bulk stream %d: %w", j, err))
			break
		}
		wg.Add(3)
		go func() { // the deadline closes the connection: both sides end
			defer wg.Done()
			<-ctx.Done()
			conn.Close()
		}()
		go func() {
			defer wg.Done()
			// It returns only on an error: the load's end, or a
			// failure before it (fail keeps only those).
			err := writeBulk(conn, j, streams, keys)
			fail(fmt.Errorf("saturation: bulk stream %d: %w", j, err))
		}()
		go func() {
			defer wg.Done()
			n, e, err := countReplies(conn)
			replies.Add(int64(n))
			errs.Add(int64(e))
			fail(fmt.Errorf("saturation: bulk stream %d: %w", j, err))
		}()
	}
	<-ctx.Done()
	wg.Wait()
	st := bulkStats{replies: int(replies.Load()), errors: int(errs.Load()), elapsed: time.Since(start)}
	return st, firstErr
}

// writeBulk writes stream j's SETs to w until a write fails, and returns
// that error (the load's end closes the connection; bulkLoad ignores the
// errors after it).
func writeBulk(w io.Writer, j, streams, keys int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	value := bytes.Repeat([]byte{'v'}, bulkValueSize)
	var key []byte
	for n := j; ; n += streams {
		if n >= keys {
			n = j
		}
		key = strconv.AppendInt(append(key[:0], "bulk:"...), int64(n), 10)
		fmt.Fprintf(bw, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(value), value)
		if bw.Buffered() > 60<<10 || n+streams >= keys { // full, or a round of the keys done
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// countReplies reads simple replies (+OK, -ERR ...) from r until a read
// fails, and returns how many it read, how many were errors, and the
// read's error.
func countReplies(r io.Reader) (n, errs int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // a long error reply: its rest follows
			}
			return n, errs, err
		}
		n++
		if len(line) > 0 && line[0] == '-' {
			errs++
		}
	}
}
