package commands

import (
	"strings"
	"sync/atomic"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// Redis reports how it encodes a value (OBJECT ENCODING) and lets its
// thresholds be changed (CONFIG SET hash-max-listpack-*). tandem stores
// every hash the same way (package keyspace); it reports the encoding
// Redis would use under the same thresholds, so that clients and tests
// that look at it see Redis's answers. The thresholds are the process's
// (one node per process), changed only by CONFIG SET, not persisted.
// Sorted sets likewise report listpack or skiplist under
// zset-max-listpack-entries and -value.
var hashMaxEntries, hashMaxValue, zsetMaxEntries, zsetMaxValue atomic.Int64

// Sets: set-max-intset-entries (512) as in every Redis 7, and Redis
// 7.2's set-max-listpack-entries/-value. Their default entries is 0 here,
// not 7.2's 128: tandem answers as Redis 7.0 does by default (a small set
// of strings is a hashtable, what 7.0's own tests expect), and a user who
// sets 128 gets 7.2's listpack answers.
var setMaxIntsetEntries, setMaxListpackEntries, setMaxListpackValue atomic.Int64

func init() {
	hashMaxEntries.Store(128)
	hashMaxValue.Store(64)
	zsetMaxEntries.Store(128)
	zsetMaxValue.Store(64)
	setMaxIntsetEntries.Store(512)
	setMaxListpackEntries.Store(0)
	setMaxListpackValue.Store(64)
}

// ZSetEncodingLimits returns zset-max-listpack-entries and -value.
func ZSetEncodingLimits() (entries, value int64) { return zsetMaxEntries.Load(), zsetMaxValue.Load() }

// SetZSetEncodingLimits sets them (CONFIG SET).
func SetZSetEncodingLimits(entries, value int64) {
	zsetMaxEntries.Store(entries)
	zsetMaxValue.Store(value)
}

// SetEncodingLimits returns set-max-intset-entries,
// set-max-listpack-entries and set-max-listpack-value.
func SetEncodingLimits() (intsetEntries, listpackEntries, listpackValue int64) {
	return setMaxIntsetEntries.Load(), setMaxListpackEntries.Load(), setMaxListpackValue.Load()
}

// SetSetEncodingLimits sets them (CONFIG SET).
func SetSetEncodingLimits(intsetEntries, listpackEntries, listpackValue int64) {
	setMaxIntsetEntries.Store(intsetEntries)
	setMaxListpackEntries.Store(listpackEntries)
	setMaxListpackValue.Store(listpackValue)
}

// HashEncodingLimits returns hash-max-listpack-entries and -value.
func HashEncodingLimits() (entries, value int64) { return hashMaxEntries.Load(), hashMaxValue.Load() }

// SetHashEncodingLimits sets them (CONFIG SET).
func SetHashEncodingLimits(entries, value int64) {
	hashMaxEntries.Store(entries)
	hashMaxValue.Store(value)
}

// Redis 7.0 encodes every list as a quicklist, whatever its size: its
// list-max-listpack-size (old name list-max-ziplist-size) and
// list-compress-depth only shape the quicklist's nodes, and Redis's own
// 7.0 tests assert "quicklist" for a list of one element. tandem reports
// that, and keeps the two parameters only so that CONFIG GET returns what
// CONFIG SET was given.
var listMaxListpackSize, listCompressDepth atomic.Int64

func init() { listMaxListpackSize.Store(-2) }

// ListConfig returns list-max-listpack-size and list-compress-depth.
func ListConfig() (maxListpackSize, compressDepth int64) {
	return listMaxListpackSize.Load(), listCompressDepth.Load()
}

// SetListConfig sets them (CONFIG SET).
func SetListConfig(maxListpackSize, compressDepth int64) {
	listMaxListpackSize.Store(maxListpackSize)
	listCompressDepth.Store(compressDepth)
}

var objectHelp = Array{
	SimpleString("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
	SimpleString("ENCODING <key>"),
	SimpleString("    Return the kind of internal representation used in order to store the value"),
	SimpleString("    associated with a <key>."),
	SimpleString("FREQ <key>"),
	SimpleString("    Return the access frequency index of the <key>. The returned integer is"),
	SimpleString("    proportional to the logarithm of the recent access frequency of the key."),
	SimpleString("IDLETIME <key>"),
	SimpleString("    Return the idle time of the <key>, that is the approximated number of"),
	SimpleString("    seconds elapsed since the last access to the key."),
	SimpleString("REFCOUNT <key>"),
	SimpleString("    Return the number of references of the value associated with the specified"),
	SimpleString("    <key>."),
	SimpleString("HELP"),
	SimpleString("    Prints this help."),
}

// Neither access frequency nor access time is kept: nothing is evicted
// (maxmemory-policy noeviction; the data lives on disk), so nothing needs
// them. FREQ answers Redis's own error for a server without an LFU
// policy; IDLETIME, which Redis answers from its LRU clock, says why
// tandem cannot.
var (
	errObjectFreq     = newError("An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
	errObjectIdletime = newError("tandem keeps no access time (it evicts nothing): OBJECT IDLETIME is not available")
)

// execObject is OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key and OBJECT
// HELP, with Redis 7's errors.
func execObject(_ *Ctx, v View, args [][]byte) (Result, error) {
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "help":
		if len(args) != 2 {
			return Result{}, &ArityError{Name: "object|help"}
		}
		return Result{Reply: objectHelp}, nil
	case "encoding", "freq", "idletime", "refcount":
		if len(args) != 3 {
			return Result{}, &ArityError{Name: "object|" + sub}
		}
	default:
		return Result{}, newError("unknown subcommand '" + string(truncArg(args[1], 128)) + "'. Try OBJECT HELP.")
	}
	val, ok, err := v.Get(args[2])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	switch sub {
	case "freq":
		return Result{}, errObjectFreq
	case "idletime":
		return Result{}, errObjectIdletime
	case "refcount":
		return Result{Reply: Int(1)}, nil // no value is shared
	}
	enc, err := encodingOf(v, args[2], val)
	return Result{Reply: Bulk(enc)}, err
}

// truncArg cuts an argument quoted in an error to n bytes.
func truncArg(b []byte, n int) []byte {
	return b[:min(len(b), n)]
}

func encodingOf(v View, key []byte, val Value) (string, error) {
	switch val.Type {
	case keyspace.TypeString:
		if _, ok := parseInt(val.Data); ok && len(val.Data) <= 20 {
			return "int", nil
		}
		if len(val.Data) <= 44 {
			return "embstr", nil
		}
		return "raw", nil
	case keyspace.TypeHash:
		entries, maxLen := HashEncodingLimits()
		if int64(val.Size) > entries {
			return "hashtable", nil
		}
		small := true
		err := v.SubScan(key, val.Version, nil, func(f, fv []byte) bool {
			small = int64(len(f)) <= maxLen && int64(len(fv)) <= maxLen
			return small
		})
		if small {
			return "listpack", err
		}
		return "hashtable", err
	case keyspace.TypeZSet:
		entries, maxLen := ZSetEncodingLimits()
		if int64(val.Size) > entries {
			return "skiplist", nil
		}
		small := true
		err := zmembers(v, key, val, nil, func(m []byte, _ float64) bool {
			small = int64(len(m)) <= maxLen
			return small
		})
		if small {
			return "listpack", err
		}
		return "skiplist", err
	case keyspace.TypeList:
		return "quicklist", nil
	case keyspace.TypeSet:
		return setEncoding(v, key, val)
	}
	return "unknown", nil
}

// setEncoding is the encoding Redis gives a set with these members: an
// intset while every member is an integer and there are at most
// set-max-intset-entries, else a listpack while there are at most
// set-max-listpack-entries none longer than set-max-listpack-value, else
// a hashtable. It reads at most the larger limit's members plus one.
//
// Redis never converts back (a set that became a hashtable stays one
// after the member that made it so is removed); tandem keeps no encoding
// in its rows, so it answers from the members the set has now.
func setEncoding(v View, key []byte, val Value) (string, error) {
	intMax, lpMax, lpValue := SetEncodingLimits()
	ints := int64(val.Size) <= intMax
	small := int64(val.Size) <= lpMax
	if !ints && !small {
		return "hashtable", nil
	}
	err := v.SubScan(key, val.Version, nil, func(m, _ []byte) bool {
		if ints {
			_, ints = parseInt(m)
		}
		if small {
			small = int64(len(m)) <= lpValue
		}
		return ints || small
	})
	switch {
	case ints:
		return "intset", err
	case small:
		return "listpack", err
	}
	return "hashtable", err
}

// memorySamples is how many sub-keys MEMORY USAGE reads to estimate a
// collection's size, as Redis's default SAMPLES 5.
const memorySamples = 5

// execMemory is MEMORY USAGE key [SAMPLES n]: the bytes of the key's rows,
// a collection's estimated from its first sub-keys.
func execMemory(_ *Ctx, v View, args [][]byte) (Result, error) {
	if !eqFold(args[1], "usage") || len(args) < 3 {
		return Result{}, newError("unknown subcommand or wrong number of arguments. Try MEMORY HELP.")
	}
	key := args[2]
	samples := int64(memorySamples)
	if len(args) == 5 && eqFold(args[3], "samples") {
		n, ok := parseInt(args[4])
		if !ok {
			return Result{}, ErrNotInteger
		}
		samples = n
	} else if len(args) != 3 {
		return Result{}, ErrSyntax
	}
	val, ok, err := v.Get(key)
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	size := int64(len(key) + keyspace.MetaRowLen(val))
	if val.IsString() || val.Size == 0 {
		return Result{Reply: Int(size)}, nil
	}
	var seen, bytes int64
	err = v.SubScan(key, val.Version, nil, func(f, fv []byte) bool {
		seen++
		bytes += int64(len(key) + 13 + len(f) + len(fv))
		return samples <= 0 || seen < samples
	})
	rows := int64(val.Size)
	if val.Type == keyspace.TypeZSet {
		rows *= 2 // a member row and an index row per member
	}
	if seen > 0 {
		size += bytes * rows / seen
	}
	return Result{Reply: Int(size)}, err
}
