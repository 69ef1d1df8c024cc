package commands

import (
	"bytes"
	"math"
	"math/big"
)

// MaxValueLen bounds the values APPEND and SETRANGE may build, like Redis's
// default proto-max-bulk-len (512 MiB).
const MaxValueLen = 512 << 20

// parseInt parses b the way Redis's string2ll does, which is stricter than
// strconv: no sign but a leading '-', no leading zeros, no spaces, no "-0",
// at most 20 characters. INCR applies it to stored values, so "01" is not
// an integer even though strconv would accept it.
func parseInt(b []byte) (int64, bool) {
	n := len(b)
	if n == 0 || n > 20 {
		return 0, false
	}
	if n == 1 && b[0] == '0' {
		return 0, true
	}
	i := 0
	neg := false
	if b[0] == '-' {
		neg = true
		i++
		if i == n {
			return 0, false
		}
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	var v uint64
	for ; i < n; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > uint64(math.MaxInt64)+1 {
			return 0, false
		}
		// -v wraps to MinInt64 exactly when v is 1<<63.
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// longDoublePrec is the mantissa precision of the x87 80-bit long double
// in which Redis computes INCRBYFLOAT. Doing the arithmetic in big.Float at
// this precision reproduces Redis's results digit for digit (Redis prints
// 0.1+0.2 as "0.3", float64 would give "0.30000000000000004"), and is
// deterministic on every platform, which replicas need.
const longDoublePrec = 64

// maxLongDoubleChars is Redis's MAX_LONG_DOUBLE_CHARS.
const maxLongDoubleChars = 5 * 1024

// parseLongDouble parses b the way Redis's string2ld does: no surrounding
// space, no NaN, the whole string consumed.
func parseLongDouble(b []byte) (*big.Float, bool) {
	if len(b) == 0 || len(b) > maxLongDoubleChars || isSpace(b[0]) || isSpace(b[len(b)-1]) {
		return nil, false
	}
	f, _, err := big.ParseFloat(string(b), 10, longDoublePrec, big.ToNearestEven)
	if err != nil {
		return nil, false
	}
	return f, true
}

// maxLongDoubleExp is the binary exponent past which an x87 long double
// overflows to infinity.
const maxLongDoubleExp = 16384

// formatLongDouble renders f as Redis's ld2string in human mode:
// "%.17Lf" with trailing zeros (and a trailing dot) removed, "-0" as "0".
// ok is false when the text would not fit Redis's buffer.
func formatLongDouble(f *big.Float) ([]byte, bool) {
	b := f.Append(nil, 'f', 17)
	if len(b)+1 > maxLongDoubleChars {
		return nil, false
	}
	if bytes.IndexByte(b, '.') >= 0 {
		b = bytes.TrimRight(b, "0")
		b = bytes.TrimSuffix(b, []byte("."))
	}
	if string(b) == "-0" {
		b = []byte("0")
	}
	return b, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// eqFold reports whether b equals the lower-case ASCII word s, ignoring
// the case of b. It is how options (NX, EX, MATCH...) are recognised
// without allocating.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// clone copies b; commands copy what they keep beyond a View callback.
// The copy is never nil, even of an empty b: a nil Bulk is the null
// reply, and an empty field, member, element or key is not null.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
