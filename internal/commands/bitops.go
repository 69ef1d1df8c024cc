package commands

import (
	"math"
	"math/bits"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Bitmap commands: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and
// BITFIELD_RO. A bitmap is a string (bit 0 is the most significant bit of
// the first byte, as in Redis), so a write logs the whole new value in one
// put that keeps the key's TTL, like SETRANGE.

var (
	errBitOffset    = newError("bit offset is not an integer or out of range")
	errBitValue     = newError("bit is not an integer or out of range")
	errBitArg       = newError("The bit argument must be 1 or 0.")
	errBitOpNot     = newError("BITOP NOT must be called with a single source key.")
	errBitfieldType = newError("Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")
	errOverflowType = newError("Invalid OVERFLOW type specified")
	errBitfieldRO   = newError("BITFIELD_RO only supports the GET subcommand")
)

// parseBitOffset is Redis's getBitOffsetFromArgument: a bit offset whose
// byte is below MaxValueLen (512 MiB, proto-max-bulk-len). With hash, a
// "#n" offset counts fields of width bits: n*bits.
func parseBitOffset(arg []byte, hash bool, width int) (uint64, error) {
	useHash := hash && len(arg) > 0 && arg[0] == '#' && width > 0
	if useHash {
		arg = arg[1:]
	}
	off, ok := parseInt(arg)
	if !ok {
		return 0, errBitOffset
	}
	if useHash {
		hi, lo := bits.Mul64(uint64(max(off, 0)), uint64(width))
		if off < 0 || hi != 0 || lo > math.MaxInt64 {
			return 0, errBitOffset
		}
		off = int64(lo)
	}
	if off < 0 || off>>3 >= MaxValueLen {
		return 0, errBitOffset
	}
	return uint64(off), nil
}

// getBit is bit off of b, 0 past its end.
func getBit(b []byte, off uint64) int {
	if off>>3 >= uint64(len(b)) {
		return 0
	}
	return int(b[off>>3]>>(7-off&7)) & 1
}

// grown returns a copy of old at least n bytes long, zero-padded: a write
// never modifies a value the View handed out.
func grown(old []byte, n uint64) []byte {
	val := make([]byte, max(uint64(len(old)), n))
	copy(val, old)
	return val
}

func execSetBit(_ *Ctx, v View, args [][]byte) (Result, error) {
	off, err := parseBitOffset(args[2], false, 0)
	if err != nil {
		return Result{}, err
	}
	var bit byte
	switch string(args[3]) {
	case "0":
	case "1":
		bit = 1
	default:
		return Result{}, errBitValue
	}
	key := args[1]
	old, _, err := getString(v, key)
	if err != nil {
		return Result{}, err
	}
	prev := getBit(old.Data, off)
	val := grown(old.Data, off>>3+1)
	mask := byte(1) << (7 - off&7)
	if bit == 1 {
		val[off>>3] |= mask
	} else {
		val[off>>3] &^= mask
	}
	return Result{Reply: Int(prev), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: val, ExpireAtMs: old.ExpireAtMs}}}, nil
}

func execGetBit(_ *Ctx, v View, args [][]byte) (Result, error) {
	off, err := parseBitOffset(args[2], false, 0)
	if err != nil {
		return Result{}, err
	}
	val, _, err := getString(v, args[1])
	return Result{Reply: Int(getBit(val.Data, off))}, err
}

// bitRange is Redis's start/end normalisation for BITCOUNT and BITPOS on
// a string of n bytes: it returns the inclusive range in bits. isBit says
// start and end count bits, else bytes. Empty when lo > hi.
func bitRange(start, end int64, isBit bool, n int64) (lo, hi int64) {
	total := n
	if isBit {
		total <<= 3
	}
	if start < 0 {
		start += total
	}
	if end < 0 {
		end += total
	}
	start, end = max(start, 0), max(end, 0)
	if end >= total {
		end = total - 1
	}
	if isBit {
		return start, end
	}
	return start * 8, end*8 + 7
}

// parseBitUnit reads BITCOUNT's and BITPOS's BYTE|BIT.
func parseBitUnit(arg []byte) (isBit bool, err error) {
	switch {
	case eqFold(arg, "bit"):
		return true, nil
	case eqFold(arg, "byte"):
		return false, nil
	}
	return false, ErrSyntax
}

// countBits counts the set bits of b in the bit range [lo, hi].
func countBits(b []byte, lo, hi int64) int64 {
	if lo > hi {
		return 0
	}
	var n int64
	// Whole bytes in the middle, bit by bit at the edges.
	for ; lo <= hi && lo&7 != 0; lo++ {
		n += int64(getBit(b, uint64(lo)))
	}
	for ; hi >= lo && hi&7 != 7; hi-- {
		n += int64(getBit(b, uint64(hi)))
	}
	if lo <= hi {
		for _, c := range b[lo>>3 : hi>>3+1] {
			n += int64(bits.OnesCount8(c))
		}
	}
	return n
}

// execBitCount is BITCOUNT key [start end [BYTE|BIT]]. As in Redis 7.0, a
// missing key answers 0 before the arguments are looked at.
func execBitCount(_ *Ctx, v View, args [][]byte) (Result, error) {
	val, ok, err := getString(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	n := int64(len(val.Data))
	switch len(args) {
	case 2:
		return Result{Reply: Int(countBits(val.Data, 0, n*8-1))}, nil
	case 4, 5:
	default:
		return Result{}, ErrSyntax
	}
	start, ok1 := parseInt(args[2])
	if !ok1 {
		return Result{}, ErrNotInteger
	}
	end, ok2 := parseInt(args[3])
	if !ok2 {
		return Result{}, ErrNotInteger
	}
	if start < 0 && end < 0 && start > end {
		return Result{Reply: Int(0)}, nil
	}
	var isBit bool
	if len(args) == 5 {
		if isBit, err = parseBitUnit(args[4]); err != nil {
			return Result{}, err
		}
	}
	lo, hi := bitRange(start, end, isBit, n)
	return Result{Reply: Int(countBits(val.Data, lo, hi))}, nil
}

// execBitPos is BITPOS key bit [start [end [BYTE|BIT]]]: the first bit
// set to bit in the range. A missing key is all zeros; without an end, the
// string is taken as followed by zeros, so a search for 0 in all-ones
// bytes answers the first bit past the range, and with an end it answers
// -1 (Redis's rule).
func execBitPos(_ *Ctx, v View, args [][]byte) (Result, error) {
	bitArg, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if bitArg != 0 && bitArg != 1 {
		return Result{}, errBitArg
	}
	want := int(bitArg)
	val, found, err := getString(v, args[1])
	if err != nil {
		return Result{}, err
	}
	if !found {
		// Endless zeros: a 0 is at 0, a 1 nowhere.
		return Result{Reply: Int(-want)}, nil
	}
	n := int64(len(val.Data))
	lo, hi := int64(0), n*8-1
	endGiven := false
	switch len(args) {
	case 3:
	case 4, 5, 6:
		start, ok := parseInt(args[3])
		if !ok {
			return Result{}, ErrNotInteger
		}
		var isBit bool
		if len(args) == 6 {
			if isBit, err = parseBitUnit(args[5]); err != nil {
				return Result{}, err
			}
		}
		end := n - 1
		if isBit {
			end = n*8 + 7
		}
		if len(args) >= 5 {
			if end, ok = parseInt(args[4]); !ok {
				return Result{}, ErrNotInteger
			}
			endGiven = true
		}
		lo, hi = bitRange(start, end, isBit, n)
	default:
		return Result{}, ErrSyntax
	}
	if lo > hi {
		return Result{Reply: Int(-1)}, nil
	}
	if pos := findBit(val.Data, lo, hi, want); pos >= 0 {
		return Result{Reply: Int(pos)}, nil
	}
	if want == 1 || endGiven {
		return Result{Reply: Int(-1)}, nil
	}
	return Result{Reply: Int(hi + 1)}, nil
}

// findBit is the first bit in [lo, hi] of b that is want, or -1.
func findBit(b []byte, lo, hi int64, want int) int64 {
	skip := byte(0) // a byte with no bit equal to want
	if want == 0 {
		skip = 0xff
	}
	for i := lo; i <= hi; {
		if i&7 == 0 && i+7 <= hi && b[i>>3] == skip {
			i += 8
			continue
		}
		if getBit(b, uint64(i)) == want {
			return i
		}
		i++
	}
	return -1
}

// execBitOp is BITOP AND|OR|XOR|NOT destkey key [key ...]. Missing keys
// are empty strings, shorter inputs are zero-padded; the result replaces
// destkey (of any type, TTL dropped) or deletes it when it is empty.
func execBitOp(_ *Ctx, v View, args [][]byte) (Result, error) {
	opName := args[1]
	var op byte
	switch {
	case eqFold(opName, "and"), eqFold(opName, "or"), eqFold(opName, "xor"), eqFold(opName, "not"):
		op = opName[0] | 0x20
	default:
		return Result{}, ErrSyntax
	}
	if op == 'n' && len(args) != 4 {
		return Result{}, errBitOpNot
	}
	srcs := make([][]byte, 0, len(args)-3)
	maxLen := 0
	for _, k := range args[3:] {
		val, _, err := getString(v, k)
		if err != nil {
			return Result{}, err
		}
		srcs = append(srcs, val.Data)
		maxLen = max(maxLen, len(val.Data))
	}
	res := make([]byte, maxLen)
	for i := range res {
		at := func(s []byte) byte {
			if i < len(s) {
				return s[i]
			}
			return 0
		}
		c := at(srcs[0])
		for _, s := range srcs[1:] {
			switch op {
			case 'a':
				c &= at(s)
			case 'o':
				c |= at(s)
			case 'x':
				c ^= at(s)
			}
		}
		if op == 'n' {
			c = ^c
		}
		res[i] = c
	}
	dst := args[2]
	t := txn{v: v}
	old, exists, err := t.get(dst)
	if err != nil {
		return Result{}, err
	}
	if exists && (maxLen == 0 || !old.IsString()) {
		t.del(dst, old)
	}
	if maxLen > 0 {
		t.put(dst, res, 0)
	}
	return t.result(Int(maxLen))
}

// Overflow behaviours of BITFIELD (Redis's BFOVERFLOW_*).
const (
	overflowWrap = iota
	overflowSat
	overflowFail
)

// bitfieldOp is one GET, SET or INCRBY of a BITFIELD.
type bitfieldOp struct {
	op       byte // 'g', 's' or 'i'
	signed   bool
	width    int // 1..64 signed, 1..63 unsigned
	offset   uint64
	arg      int64
	overflow int
}

// parseBitfieldType is Redis's getBitfieldTypeFromArgument: i1..i64 or
// u1..u63, lower case only.
func parseBitfieldType(arg []byte) (signed bool, width int, err error) {
	if len(arg) == 0 || (arg[0] != 'i' && arg[0] != 'u') {
		return false, 0, errBitfieldType
	}
	signed = arg[0] == 'i'
	n, ok := parseInt(arg[1:])
	if !ok || n < 1 || (signed && n > 64) || (!signed && n > 63) {
		return false, 0, errBitfieldType
	}
	return signed, int(n), nil
}

// parseBitfield reads BITFIELD's subcommands in Redis's order of checks.
// It returns the ops and the highest bit a SET or INCRBY writes (-1 when
// there is none: the command only reads).
func parseBitfield(args [][]byte) ([]bitfieldOp, int64, error) {
	var ops []bitfieldOp
	overflow := overflowWrap
	highest := int64(-1)
	for j := 0; j < len(args); j++ {
		rem := len(args) - j - 1
		var op byte
		switch sub := args[j]; {
		case eqFold(sub, "get") && rem >= 2:
			op = 'g'
		case eqFold(sub, "set") && rem >= 3:
			op = 's'
		case eqFold(sub, "incrby") && rem >= 3:
			op = 'i'
		case eqFold(sub, "overflow") && rem >= 1:
			j++
			switch o := args[j]; {
			case eqFold(o, "wrap"):
				overflow = overflowWrap
			case eqFold(o, "sat"):
				overflow = overflowSat
			case eqFold(o, "fail"):
				overflow = overflowFail
			default:
				return nil, 0, errOverflowType
			}
			continue
		default:
			return nil, 0, ErrSyntax
		}
		signed, width, err := parseBitfieldType(args[j+1])
		if err != nil {
			return nil, 0, err
		}
		off, err := parseBitOffset(args[j+2], true, width)
		if err != nil {
			return nil, 0, err
		}
		bop := bitfieldOp{op: op, signed: signed, width: width, offset: off, overflow: overflow}
		if op != 'g' {
			highest = max(highest, int64(off)+int64(width)-1)
			n, ok := parseInt(args[j+3])
			if !ok {
				return nil, 0, ErrNotInteger
			}
			bop.arg = n
			j++
		}
		ops = append(ops, bop)
		j += 2
	}
	return ops, highest, nil
}

// getField reads width bits at off, most significant first, as an
// unsigned number; bits past the end of b are 0.
func getField(b []byte, off uint64, width int) uint64 {
	var v uint64
	for i := range width {
		v = v<<1 | uint64(getBit(b, off+uint64(i)))
	}
	return v
}

// setField writes the low width bits of v at off; b is long enough.
func setField(b []byte, off uint64, width int, v uint64) {
	for i := range width {
		pos := off + uint64(i)
		mask := byte(1) << (7 - pos&7)
		if v>>(width-1-i)&1 == 1 {
			b[pos>>3] |= mask
		} else {
			b[pos>>3] &^= mask
		}
	}
}

// signExtend reads a width-bit two's complement number.
func signExtend(v uint64, width int) int64 {
	if width < 64 && v&(1<<(width-1)) != 0 {
		v |= ^uint64(0) << width
	}
	return int64(v)
}

// unsignedOverflow is Redis's checkUnsignedBitfieldOverflow: whether
// value+incr leaves [0, 2^width-1], and the value WRAP or SAT stores.
func unsignedOverflow(value uint64, incr int64, width int, how int) (bool, uint64) {
	maxV := uint64(1)<<width - 1
	maxIncr := int64(maxV - value)
	minIncr := -int64(value)
	wrap := func() uint64 { return (value + uint64(incr)) &^ (^uint64(0) << width) }
	switch {
	case value > maxV || (incr > 0 && incr > maxIncr):
		if how == overflowWrap {
			return true, wrap()
		}
		return true, maxV
	case incr < 0 && incr < minIncr:
		if how == overflowWrap {
			return true, wrap()
		}
		return true, 0
	}
	return false, 0
}

// signedOverflow is Redis's checkSignedBitfieldOverflow.
func signedOverflow(value, incr int64, width int, how int) (bool, int64) {
	maxV := int64(math.MaxInt64)
	if width < 64 {
		maxV = int64(1)<<(width-1) - 1
	}
	minV := -maxV - 1
	// maxIncr and minIncr may wrap; they are used only once value is
	// known to be in range, as in Redis.
	maxIncr := int64(uint64(maxV) - uint64(value))
	minIncr := minV - value
	wrap := func() int64 {
		c := uint64(value) + uint64(incr)
		if width < 64 {
			mask := ^uint64(0) << width
			if c&(1<<(width-1)) != 0 {
				c |= mask
			} else {
				c &^= mask
			}
		}
		return int64(c)
	}
	switch {
	case value > maxV || (width != 64 && incr > maxIncr) || (value >= 0 && incr > 0 && incr > maxIncr):
		if how == overflowWrap {
			return true, wrap()
		}
		return true, maxV
	case value < minV || (width != 64 && incr < minIncr) || (value < 0 && incr < 0 && incr < minIncr):
		if how == overflowWrap {
			return true, wrap()
		}
		return true, minV
	}
	return false, 0
}

func execBitfield(_ *Ctx, v View, args [][]byte) (Result, error) {
	return bitfield(v, args, false)
}

func execBitfieldRO(_ *Ctx, v View, args [][]byte) (Result, error) {
	return bitfield(v, args, true)
}

// bitfield is BITFIELD and BITFIELD_RO. A write grows the string to the
// highest bit any SET or INCRBY names, even one that OVERFLOW FAIL stops,
// and keeps the key's TTL, as Redis does.
func bitfield(v View, args [][]byte, readOnly bool) (Result, error) {
	ops, highest, err := parseBitfield(args[2:])
	if err != nil {
		return Result{}, err
	}
	if highest >= 0 && readOnly {
		return Result{}, errBitfieldRO
	}
	key := args[1]
	old, _, err := getString(v, key)
	if err != nil {
		return Result{}, err
	}
	buf := old.Data
	if highest >= 0 {
		buf = grown(old.Data, uint64(highest)>>3+1)
	}
	out := make(Array, len(ops))
	for i, op := range ops {
		cur := getField(buf, op.offset, op.width)
		if op.op == 'g' {
			if op.signed {
				out[i] = Int(signExtend(cur, op.width))
			} else {
				out[i] = Int(cur)
			}
			continue
		}
		var store uint64
		var over bool
		if op.signed {
			oldV := signExtend(cur, op.width)
			newV, reply := op.arg, oldV
			incr := int64(0)
			if op.op == 'i' {
				newV, incr = oldV, op.arg
			}
			ov, wrapped := signedOverflow(newV, incr, op.width, op.overflow)
			newV += incr
			if ov {
				newV = wrapped
			}
			if op.op == 'i' {
				reply = newV
			}
			over, store, out[i] = ov, uint64(newV), Int(reply)
		} else {
			newV, reply := uint64(op.arg), int64(cur)
			incr := int64(0)
			if op.op == 'i' {
				newV, incr = cur, op.arg
			}
			ov, wrapped := unsignedOverflow(newV, incr, op.width, op.overflow)
			newV += uint64(incr)
			if ov {
				newV = wrapped
			}
			if op.op == 'i' {
				reply = int64(newV)
			}
			over, store, out[i] = ov, newV, Int(reply)
		}
		if over && op.overflow == overflowFail {
			out[i] = Null
			continue
		}
		setField(buf, op.offset, op.width, store)
	}
	if highest < 0 {
		return Result{Reply: out}, nil
	}
	return Result{Reply: out, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: buf, ExpireAtMs: old.ExpireAtMs}}}, nil
}
