package commands

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// DUMP, RESTORE, COPY and RANDOMKEY: commands that move or pick whole
// keys of any type. They work over package keyspace's layout — a metadata
// row and the sub-key rows of its version — never over a type's own
// commands, so every collection type (hashes, sets, sorted sets, lists)
// is dumped, restored and copied by the same code.

// # DUMP payload (tandem's own; part of what clients store: frozen)
//
//	version  1 byte, dumpVersion
//	type     1 byte, the keyspace.Type
//	metaLen  uvarint
//	meta     metaLen bytes: the key's metadata row (keyspace.AppendMetaRow)
//	         with expiry and version 0 (RESTORE sets both)
//	rows     for a collection, every sub-key row of its version in
//	         ascending sub-key order, each
//	           subLen uvarint | sub | valLen uvarint | val
//	         none for a string (its value is in its metadata row)
//	crc      4 bytes, little endian: CRC32C (frame.Checksum) of every
//	         byte before it
//
// Like Redis's (RDB object | RDB version | CRC64), a payload names its
// format version and is checksummed, so RESTORE refuses a payload of an
// unknown version or with a flipped bit ("DUMP payload version or
// checksum are wrong") before it parses anything; one that verifies but
// does not parse is "Bad data format". It is not Redis's RDB encoding: a
// payload moves between tandem nodes, not to Redis.
//
// Carrying the metadata row whole, rather than a type's fields, is what
// makes the payload generic: a type whose metadata grows (a list's head
// and tail) round-trips with no change here.
const dumpVersion = 1

// MaxDumpBytes bounds a DUMP payload (and so a RESTORE): a DUMP whose
// payload would pass it is refused with an error, not built. 64 MiB is
// the leader's default in-flight bytes (replication.DefaultMaxInFlightBytes),
// so the entry a RESTORE of it makes is one the stream admits. A variable
// so tests can lower it.
var MaxDumpBytes = 64 << 20

var (
	errDumpPayload = newError("DUMP payload version or checksum are wrong")
	errBadData     = newError("Bad data format")
	errTTLValue    = newError("Invalid TTL value, must be >= 0")
	errIdleTime    = newError("Invalid IDLETIME value, must be >= 0")
	errFreq        = newError("Invalid FREQ value, must be >= 0 and <= 255")
	errSameObject  = newError("source and destination objects are the same")
	errDBIndex     = newError("DB index is out of range")
	// BusyKey is Redis's reply to RESTORE onto an existing key.
	BusyKey = ErrorReply("BUSYKEY Target key name already exists.")
)

// errDumpTooLarge is refused DUMP's error.
func errDumpTooLarge(key []byte) error {
	return newError(fmt.Sprintf("DUMP payload of key '%s' would exceed %d bytes", key, MaxDumpBytes))
}

// dumpPayload builds key's payload (its metadata v), or refuses it past
// MaxDumpBytes.
func dumpPayload(v View, key []byte, val Value) ([]byte, error) {
	meta := val
	meta.ExpireAtMs, meta.Version = 0, 0
	out := []byte{dumpVersion, byte(val.Type)}
	out = binary.AppendUvarint(out, uint64(keyspace.MetaRowLen(meta)))
	out = keyspace.AppendMetaRow(out, meta)
	tooBig := false
	if !val.IsString() {
		err := v.SubScan(key, val.Version, nil, func(sub, row []byte) bool {
			if len(out)+len(sub)+len(row)+2*binary.MaxVarintLen64+4 > MaxDumpBytes {
				tooBig = true
				return false
			}
			out = binary.AppendUvarint(out, uint64(len(sub)))
			out = append(out, sub...)
			out = binary.AppendUvarint(out, uint64(len(row)))
			out = append(out, row...)
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	if tooBig || len(out)+4 > MaxDumpBytes {
		return nil, errDumpTooLarge(key)
	}
	return binary.LittleEndian.AppendUint32(out, frame.Checksum(out)), nil
}

// uvarintLen is the length of n's shortest uvarint encoding.
func uvarintLen(n uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], n)
}

// dumpRow is one sub-key row of a payload.
type dumpRow struct{ sub, val []byte }

// errNotDump says why a payload does not parse (it becomes errBadData).
var errNotDump = errors.New("commands: not a dump payload")

// verifyPayload checks a payload's version and checksum and returns the
// bytes the checksum covers after the version.
func verifyPayload(p []byte) ([]byte, error) {
	if len(p) < 2+4 || p[0] != dumpVersion {
		return nil, errDumpPayload
	}
	body := p[:len(p)-4]
	if binary.LittleEndian.Uint32(p[len(p)-4:]) != frame.Checksum(body) {
		return nil, errDumpPayload
	}
	return body[1:], nil
}

// parsePayload reads a verified payload body: the metadata (expiry and
// version 0) and, for a collection, its rows (aliasing body), at least
// one and in strictly ascending sub-key order.
func parsePayload(body []byte) (Value, []dumpRow, error) {
	typ := keyspace.Type(body[0])
	body = body[1:]
	chunk := func() ([]byte, error) {
		n, k := binary.Uvarint(body)
		// Only the shortest encoding of a length: a payload has one
		// encoding, the one DUMP writes.
		if k <= 0 || k != uvarintLen(n) || n > uint64(len(body)-k) {
			return nil, errNotDump
		}
		b := body[k : k+int(n)]
		body = body[k+int(n):]
		return b, nil
	}
	meta, err := chunk()
	if err != nil {
		return Value{}, nil, err
	}
	val, err := keyspace.DecodeMetaRow(meta)
	if err != nil || val.Type != typ || val.ExpireAtMs != 0 || val.Version != 0 {
		return Value{}, nil, errNotDump
	}
	if val.IsString() {
		if len(body) != 0 {
			return Value{}, nil, errNotDump
		}
		return val, nil, nil
	}
	var rows []dumpRow
	for len(body) > 0 {
		sub, err := chunk()
		if err != nil {
			return Value{}, nil, err
		}
		row, err := chunk()
		if err != nil {
			return Value{}, nil, err
		}
		if len(rows) > 0 && bytes.Compare(rows[len(rows)-1].sub, sub) >= 0 {
			return Value{}, nil, errNotDump
		}
		rows = append(rows, dumpRow{sub, row})
	}
	if len(rows) == 0 {
		return Value{}, nil, errNotDump
	}
	return val, rows, nil
}

func execDump(_ *Ctx, v View, args [][]byte) (Result, error) {
	val, ok, err := v.Get(args[1])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	p, err := dumpPayload(v, args[1], val)
	if err != nil {
		return Result{}, err
	}
	return Result{Reply: Bulk(p)}, nil
}

// execRestore is RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s]
// [FREQ f], with Redis 7's order of checks. IDLETIME and FREQ are checked
// and ignored: tandem keeps no LRU or LFU data. A restored collection gets
// the entry's new version and every row of the payload; a key whose
// expiry is already past is not created (a REPLACE still deletes the old
// key), as in Redis.
func execRestore(ctx *Ctx, v View, args [][]byte) (Result, error) {
	var replace, absTTL, idle, freq bool
	for j := 4; j < len(args); j++ {
		more := j+1 < len(args)
		switch opt := args[j]; {
		case eqFold(opt, "replace"):
			replace = true
		case eqFold(opt, "absttl"):
			absTTL = true
		case eqFold(opt, "idletime") && more && !freq:
			n, ok := parseInt(args[j+1])
			if !ok {
				return Result{}, ErrNotInteger
			}
			if n < 0 {
				return Result{}, errIdleTime
			}
			idle = true
			j++
		case eqFold(opt, "freq") && more && !idle:
			n, ok := parseInt(args[j+1])
			if !ok {
				return Result{}, ErrNotInteger
			}
			if n < 0 || n > 255 {
				return Result{}, errFreq
			}
			freq = true
			j++
		default:
			return Result{}, ErrSyntax
		}
	}
	key := args[1]
	old, exists, err := v.Get(key)
	if err != nil {
		return Result{}, err
	}
	if exists && !replace {
		return Result{Reply: BusyKey}, nil
	}
	ttl, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if ttl < 0 {
		return Result{}, errTTLValue
	}
	body, err := verifyPayload(args[3])
	if err != nil {
		return Result{}, err
	}
	val, rows, err := parsePayload(body)
	if err != nil {
		return Result{}, errBadData
	}
	if ttl != 0 && !absTTL {
		if ttl > math.MaxInt64-ctx.NowMs {
			return Result{}, errTTLValue
		}
		ttl += ctx.NowMs
	}
	t := txn{v: v}
	if exists {
		t.del(key, old)
	}
	if ttl != 0 && expired(ctx, ttl) {
		return t.result(OK)
	}
	val.ExpireAtMs = ttl
	if val.IsString() {
		t.put(key, val.Data, ttl)
		return t.result(OK)
	}
	if val.Version, err = newVersion(v); err != nil {
		return Result{}, err
	}
	for _, r := range rows {
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: val.Version, Sub: r.sub, Value: r.val})
	}
	t.record(metaOp(key, val, ttl))
	return t.result(OK)
}

// execCopy is COPY source destination [DB destination-db] [REPLACE].
// tandem has database 0 only. The copy keeps the source's TTL; a
// collection's rows are copied under a new version (copyValue), all in
// the command's one entry, so a source whose rows pass MaxDumpBytes is
// refused before any is read into memory past that bound.
func execCopy(_ *Ctx, v View, args [][]byte) (Result, error) {
	replace := false
	for j := 3; j < len(args); j++ {
		switch opt := args[j]; {
		case eqFold(opt, "replace"):
			replace = true
		case eqFold(opt, "db") && j+1 < len(args):
			db, ok := parseInt(args[j+1])
			if !ok || db < math.MinInt32 || db > math.MaxInt32 {
				return Result{}, ErrNotInteger
			}
			if db != 0 {
				return Result{}, errDBIndex
			}
			j++
		default:
			return Result{}, ErrSyntax
		}
	}
	src, dst := args[1], args[2]
	if bytes.Equal(src, dst) {
		return Result{}, errSameObject
	}
	val, ok, err := v.Get(src)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	t := txn{v: v}
	old, exists, err := t.get(dst)
	if err != nil {
		return Result{}, err
	}
	if exists {
		if !replace {
			return Result{Reply: Int(0)}, nil
		}
		t.del(dst, old)
	}
	if over, err := rowsOver(v, src, val, MaxDumpBytes); err != nil || over {
		if err == nil {
			err = newError(fmt.Sprintf("COPY of key '%s' would log more than %d bytes", src, MaxDumpBytes))
		}
		return Result{}, err
	}
	if err := copyValue(&t, src, dst, val); err != nil {
		return Result{}, err
	}
	return t.result(Int(1))
}

// randomKeyWalk is how many keys past its pick RANDOMKEY may step (see
// execRandomKey).
const randomKeyWalk = 16

// randomKeyMaxDepth bounds RANDOMKEY's descent: past it (keys sharing a
// prefix this long) the subtree's first key is taken.
const randomKeyMaxDepth = 1024

// execRandomKey is RANDOMKEY. It never reads every key: it walks down the
// trie of the live keys' bytes from the root, at each level finding the
// bytes that follow the prefix so far (one seek per distinct byte, so at
// most 257 seeks a level, and one level per byte of the chosen key's
// prefix until its subtree holds one key), choosing one uniformly (a key
// equal to the prefix itself is one more choice), and then steps a random
// 0 to 15 keys further on, wrapping from the last key to the first.
//
// # Fairness
//
// A key's chance is the product of 1/(choices) along its path, spread over
// the 16 keys after it by the final steps. It is uniform when the trie is
// balanced and not otherwise; TestRandomKeyFair computes the exact odds
// (as multiples of 1/n): 300 fixed-width counters exactly 1; 300 random
// hex ids from 0.63 to 1.41; the counters 1 to 300, whose short keys
// compete with whole subtrees ("1" against "10".."19" and "100".."199"),
// from 0.28 to 3.0. Families of very different sizes are the worst case:
// with "cache:*" holding 10 keys and "user:*" a million, each family gets
// about half the draws. Expired keys are never answered. Redis's own
// RANDOMKEY is near-uniform; a workload that needs a fair sample should
// use SCAN.
func execRandomKey(_ *Ctx, v View, _ [][]byte) (Result, error) {
	return randomKey(v, rand.IntN)
}

// randomKey is RANDOMKEY with its source of randomness, uniform in [0, n).
func randomKey(v View, uniform func(n int) int) (Result, error) {
	first, ok, err := firstKeyFrom(v, nil, nil)
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	pick, err := trieWalk(v, first, uniform)
	if err != nil {
		return Result{}, err
	}
	steps := uniform(randomKeyWalk)
	var key []byte
	// Each pass from the start visits the first key at least, so the walk
	// ends within randomKeyWalk passes.
	for start := pick; key == nil; start = nil {
		err := v.Scan(start, func(k []byte, _ Value) bool {
			if steps == 0 {
				key = clone(k)
				return false
			}
			steps--
			return true
		})
		if err != nil {
			return Result{}, err
		}
	}
	return Result{Reply: Bulk(key)}, nil
}

// trieWalk descends from the root (whose first key is first) choosing a
// branch uniformly at each level, and returns the key it ends on.
func trieWalk(v View, first []byte, uniform func(n int) int) ([]byte, error) {
	p := []byte{}
	subFirst := first // the first key with prefix p
	for range randomKeyMaxDepth {
		// The choices: p itself when it is a key, then each byte that
		// follows p in some key, with the first key of that branch and
		// whether the branch holds more than one key.
		type branch struct {
			first []byte
			more  bool
		}
		var choices []branch
		if len(subFirst) == len(p) {
			choices = append(choices, branch{first: subFirst})
		}
		seek := append(p[:len(p):len(p)], 0)
		for {
			var keys [][]byte
			err := v.Scan(seek, func(k []byte, _ Value) bool {
				if !bytes.HasPrefix(k, p) {
					return false
				}
				keys = append(keys, clone(k))
				return len(keys) < 2
			})
			if err != nil {
				return nil, err
			}
			if len(keys) == 0 {
				break
			}
			b := keys[0][len(p)]
			more := len(keys) == 2 && len(keys[1]) > len(p) && keys[1][len(p)] == b
			choices = append(choices, branch{first: keys[0], more: more})
			if b == 0xff {
				break
			}
			seek[len(p)] = b + 1
		}
		c := choices[uniform(len(choices))]
		if len(c.first) == len(p) || !c.more {
			return c.first, nil
		}
		p = c.first[:len(p)+1]
		subFirst = c.first
	}
	return subFirst, nil
}

// firstKeyFrom is the first live key >= start that starts with prefix.
func firstKeyFrom(v View, start, prefix []byte) ([]byte, bool, error) {
	var out []byte
	found := false
	err := v.Scan(start, func(key []byte, _ Value) bool {
		if bytes.HasPrefix(key, prefix) {
			out, found = clone(key), true
		}
		return false
	})
	return out, found, err
}

// rowsOver reports whether key's value (its metadata val) holds more than
// limit bytes of keys and values, reading no further than that.
func rowsOver(v View, key []byte, val Value, limit int) (bool, error) {
	if val.IsString() {
		return len(val.Data) > limit, nil
	}
	n := 0
	err := v.SubScan(key, val.Version, nil, func(sub, row []byte) bool {
		n += len(sub) + len(row)
		return n <= limit
	})
	return n > limit, err
}
