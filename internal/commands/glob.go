package commands

// Match reports whether s matches the Redis glob pattern pat, exactly as
// Redis's stringmatchlen does for KEYS, SCAN MATCH and CONFIG GET:
//
//	?        any one byte
//	*        any sequence, including empty
//	[abc]    one of the bytes; [^abc] none of them; [a-z] a range (either
//	         order); \x inside a class is a literal x; a class missing its
//	         ']' ends at the end of the pattern
//	\x       a literal x (a trailing \ is a literal backslash)
//
// Matching is byte-wise and case-sensitive. Every token but '*' matches
// exactly one byte, so one backtracking point (the last '*') suffices and
// the cost is O(len(pat)*len(s)) at worst, never exponential.
func Match(pat, s []byte) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pat) {
			if pat[p] == '*' {
				for p < len(pat) && pat[p] == '*' {
					p++
				}
				if p == len(pat) {
					return true
				}
				starP, starI = p, i
				continue
			}
			if ok, next := matchOne(pat, p, s[i]); ok {
				p, i = next, i+1
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starI++
		p, i = starP, starI
	}
	for p < len(pat) && pat[p] == '*' {
		p++
	}
	return p == len(pat)
}

// matchOne matches the single-byte token at pat[p] (not '*') against c and
// returns the position after the token.
func matchOne(pat []byte, p int, c byte) (bool, int) {
	switch pat[p] {
	case '?':
		return true, p + 1
	case '\\':
		if p+1 < len(pat) {
			return pat[p+1] == c, p + 2
		}
		return c == '\\', p + 1
	case '[':
		return matchClass(pat, p+1, c)
	}
	return pat[p] == c, p + 1
}

// matchClass matches c against the class whose body starts at pat[p] (just
// after '['), following Redis's quirks: a ']' right at the start closes an
// empty class, "a-" followed by one more byte is a range even if that byte
// is ']', and a missing ']' ends the class at the end of the pattern.
func matchClass(pat []byte, p int, c byte) (bool, int) {
	not := p < len(pat) && pat[p] == '^'
	if not {
		p++
	}
	match := false
	for {
		if p >= len(pat) {
			break // unterminated: the class runs to the end
		}
		switch {
		case pat[p] == '\\' && p+1 < len(pat):
			if pat[p+1] == c {
				match = true
			}
			p += 2
			continue
		case pat[p] == ']':
			p++
			if not {
				match = !match
			}
			return match, p
		case p+2 < len(pat) && pat[p+1] == '-':
			lo, hi := pat[p], pat[p+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo <= c && c <= hi {
				match = true
			}
			p += 3
			continue
		}
		if pat[p] == c {
			match = true
		}
		p++
	}
	if not {
		match = !match
	}
	return match, p
}
