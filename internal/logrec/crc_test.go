package logrec

import "hash/crc32"

// castagnoli is the tests' own CRC32C table, independent of package frame,
// so that the tests that recompute checksums also pin the frozen format.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)
