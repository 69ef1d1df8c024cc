//go:build !race

package node

// raceDetector: the race detector is off (race_test.go).
const raceDetector = false
