//go:build !race

package libcontainerd

const raceEnabled = false
