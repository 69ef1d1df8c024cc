//go:build !cgo

package storage

import "time"

// Without cgo Pebble's manual memory is on the Go heap: nothing to tune.
func cTuneMalloc(arenas, mmapThreshold int) {}

func cMallocTrim() (released bool, cpu time.Duration) { return false, 0 }
