//go:build race

package node

// raceDetector: the race detector is on; it allocates for its own
// bookkeeping, so allocation counts are not the program's.
const raceDetector = true
