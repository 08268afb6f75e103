package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Shim is a running containerd shim process, as its command line names it.
type Shim struct {
	Pid, PPid int
	// Namespace, ID and Address are the shim's -namespace, -id and
	// -address arguments: the containerd namespace, the task, and the
	// socket of the containerd that started it.
	Namespace, ID, Address string
	Cmdline                string
}

func (s Shim) String() string {
	return fmt.Sprintf("pid %d (parent %d) -namespace %s -id %s -address %s", s.Pid, s.PPid, s.Namespace, s.ID, s.Address)
}

// HostShims lists every live (not zombie) containerd-shim* process on the
// host.
func HostShims() []Shim {
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []Shim
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		state, ppid, ok := procStat(pid)
		if !ok || state == "Z" || state == "X" {
			continue
		}
		s := Shim{Pid: pid, PPid: ppid, Cmdline: strings.Join(args, " ")}
		for i := 1; i < len(args); i++ {
			name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
			if !hasVal && i+1 < len(args) {
				val = args[i+1]
			}
			switch name {
			case "namespace":
				s.Namespace = val
			case "id":
				s.ID = val
			case "address":
				s.Address = val
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

// procStat returns a process's state letter and parent pid.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// The command may contain spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return fields[0], ppid, err == nil
}

// Shims lists the live shims this daemon started (its socket as their
// -address) or that run a task in one of namespaces.
func (d *Daemon) Shims(namespaces ...string) []Shim {
	var out []Shim
	for _, s := range HostShims() {
		if s.Address == d.Address || contains(namespaces, s.Namespace) {
			out = append(out, s)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// WaitShimsGone waits up to timeout for the shims of d (see Shims) to exit
// and returns the ones still running then. A shim exits a moment after the
// delete that ends its last task returns; the wait is on each process's
// pidfd, not a poll.
func (d *Daemon) WaitShimsGone(timeout time.Duration, namespaces ...string) []Shim {
	deadline := time.Now().Add(timeout)
	for _, s := range d.Shims(namespaces...) {
		if err := waitPidExit(s.Pid, time.Until(deadline)); err != nil {
			break // the deadline passed: report what is left
		}
	}
	return d.Shims(namespaces...)
}

// errStillRunning says a process outlived the wait.
var errStillRunning = errors.New("still running")

// waitPidExit waits until pid exits (it need not be our child), at most
// timeout.
func waitPidExit(pid int, timeout time.Duration) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return nil // already gone
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		ms := int(timeout / time.Millisecond)
		if ms <= 0 {
			return errStillRunning
		}
		start := time.Now()
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		switch {
		case errors.Is(err, syscall.EINTR):
			timeout -= time.Since(start)
			continue
		case err != nil:
			return err
		case n == 0:
			return errStillRunning
		}
		return nil // readable: the process has exited
	}
}

// CheckShims is the test binary's last check, once every test ran and the
// namespaces were cleaned up: no shim of this daemon or of the namespaces
// handed out may still run. It waits (bounded) for shims of just-deleted
// tasks to exit, then kills the ones left (so they do not outlive the run)
// and returns an error naming them, or nil.
func (e *Env) CheckShims(timeout time.Duration) error {
	e.mu.Lock()
	nss := append([]string(nil), e.namespaces...)
	e.mu.Unlock()
	left := e.WaitShimsGone(timeout, nss...)
	if len(left) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d containerd shim(s) of this test binary still running after every test and the clean-up of its namespaces:", len(left))
	for _, s := range left {
		fmt.Fprintf(&b, "\n  %s", s)
		bundle := filepath.Join(e.Dir, "state", "io.containerd.runtime.v2.task", s.Namespace, s.ID)
		if entries, err := os.ReadDir(bundle); err != nil {
			fmt.Fprintf(&b, "\n    its bundle dir in containerd's state: %v", err)
		} else {
			var names []string
			for _, en := range entries {
				names = append(names, en.Name())
			}
			fmt.Fprintf(&b, "\n    its bundle dir in containerd's state holds %v", names)
		}
		if lines := e.logLinesAbout(s.ID, 40); len(lines) > 0 {
			fmt.Fprintf(&b, "\n    containerd log about %s (last %d lines):", s.ID, len(lines))
			for _, l := range lines {
				fmt.Fprintf(&b, "\n      %s", l)
			}
		}
		_ = syscall.Kill(s.Pid, syscall.SIGKILL)
	}
	return errors.New(b.String())
}

// logLinesAbout returns the last max lines of the daemon's log that name
// the task id (as a whole word).
func (e *Env) logLinesAbout(id string, max int) []string {
	b, err := os.ReadFile(e.LogPath)
	if err != nil || id == "" {
		return nil
	}
	word := regexp.MustCompile(`(^|[^A-Za-z0-9_.-])` + regexp.QuoteMeta(id) + `($|[^A-Za-z0-9_.-])`)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if word.MatchString(l) {
			out = append(out, l)
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}
