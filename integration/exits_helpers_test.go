package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/lcdkit/libcontainerd/internal/testhooks"
)

// trackedTimeout bounds the wait for a client's exit ledger to empty: the
// last exits are handed to the backend, and their deletes seen,
// asynchronously.
const trackedTimeout = 10 * time.Second

// assertNotTracked checks the client's exit ledger holds no process once
// every process of it is deleted and its exit delivered. Until the root
// package sets the hook it says so and checks nothing: the rest of the test
// still runs.
func assertNotTracked(t testing.TB, client any) {
	t.Helper()
	if testhooks.TrackedProcesses == nil {
		t.Log("testhooks.TrackedProcesses is not set by the root package: tracker count not checked")
		return
	}
	deadline := time.Now().Add(trackedTimeout)
	n := testhooks.TrackedProcesses(client)
	for n != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the ledger has no notification: a bounded poll
		n = testhooks.TrackedProcesses(client)
	}
	if n != 0 {
		t.Errorf("the client's exit ledger still holds %d processes after every process was deleted and its exit delivered", n)
	}
}

// assertNoShims checks no shim of namespace is still running (waiting,
// bounded, for the shims of just-deleted tasks to exit), and names the ones
// that are.
func assertNoShims(t testing.TB, namespace string) {
	t.Helper()
	for _, s := range env.WaitShimsGone(shimGoneTimeout, namespace) {
		if s.Namespace == namespace {
			t.Errorf("shim left running: %s", s)
		}
	}
}

// shimGoneTimeout bounds the wait for a deleted task's shim to exit.
const shimGoneTimeout = 10 * time.Second

// markers is a host dir every container of a test sees at markerDir, read-
// write, in which each process touches a file when it runs and another
// just before it exits on its own: proof of what ran and how it ended,
// independent of what containerd or the library report.
type markers struct{ dir string }

// markerDir is where containers see the marker dir: /run exists in the
// read-only rootfs.
const markerDir = "/run"

func newMarkers(t testing.TB) markers {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "markers")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return markers{dir}
}

// mount is the spec option that bind-mounts the marker dir.
func (m markers) mount() oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: markerDir,
		Type:        "bind",
		Source:      m.dir,
		Options:     []string{"rbind", "rw"},
	}})
}

// ran reports whether the process named name touched its start marker.
func (m markers) ran(name string) bool {
	_, err := os.Stat(filepath.Join(m.dir, name))
	return err == nil
}

// exited returns the code the process named name wrote just before
// exiting on its own, or false if it did not (it is running or was
// killed).
func (m markers) exited(name string) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(m.dir, name+".exit"))
	if err != nil {
		return 0, false
	}
	c, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(c), true
}

// script is a shell command that touches name's start marker, runs body,
// and, if body ends, writes code as its exit marker and exits with it.
func script(name, body string, code uint32) string {
	return fmt.Sprintf("touch %[1]s/%[2]s; %[3]s; echo %[4]d > %[1]s/%[2]s.exit; exit %[4]d", markerDir, name, body, code)
}

// awaitExits waits (bounded, woken by each event) until every process in
// keys (container, process) has at least one exit, and returns the ones
// still without one at the deadline.
func (b *recordingBackend) awaitExits(keys [][2]string, timeout time.Duration) (missing []string) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := b.changed()
		exits := b.exits()
		missing = missing[:0]
		for _, k := range keys {
			if len(exits[k]) == 0 {
				missing = append(missing, k[0]+"/"+k[1])
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return missing
		}
	}
}
