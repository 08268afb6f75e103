//go:build race

package libcontainerd

// raceEnabled shortens the scale tests: the race detector slows them ~10×.
const raceEnabled = true
