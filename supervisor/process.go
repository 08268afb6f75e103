package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lcdkit/libcontainerd/internal/proc"
)

// daemonProc is one containerd process: a child of ours, or one adopted from
// the pid file. Only the supervising goroutine uses it, except exited.
type daemonProc struct {
	pid     int
	adopted bool
	started time.Time // when it was found serving

	// exited is closed once the process is gone (reaped, for a child);
	// status then says how it ended.
	exited <-chan struct{}
	status string

	signal  func(syscall.Signal) error
	release func() // frees what watches the process; call once, last
}

// startChild starts the daemon as our child; proc.Start makes it die with
// this process, even on kill -9.
func (r *remote) startChild() (*daemonProc, error) {
	cmd := exec.Command(r.binary, "--config", r.configFile)
	if r.logWriter != nil {
		cmd.Stdout, cmd.Stderr = r.logWriter, r.logWriter
	} else {
		// As moby's supervisor: the daemon's output is the engine's.
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // a terminal's ^C is for the engine, not the daemon
	}
	// With a non-file log writer, Wait would also wait for every inheritor
	// of the pipe (shims) to close it; bound that.
	cmd.WaitDelay = time.Second

	child, err := proc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", r.binary, err)
	}
	exited := make(chan struct{})
	p := &daemonProc{pid: child.Pid(), exited: exited, release: func() {}}
	go func() {
		<-child.Exited()
		if err := child.Err(); err == nil {
			p.status = "exited with status 0"
		} else {
			p.status = err.Error()
		}
		close(exited) // after status: readers see it once exited is closed
	}()
	p.signal = func(sig syscall.Signal) error {
		if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		return nil
	}
	return p, nil
}

// adopt returns the process named by pid if it is a containerd running our
// config; nil (and the reason) if it is not, or is gone. The process is
// held through a pidfd, so a recycled pid can neither be signalled by
// mistake nor hide the daemon's death.
func (r *remote) adopt(pid int) (*daemonProc, string) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Sprintf("pidfd_open(%d): %v", pid, err)
	}
	// Checked after pidfd_open, so the identity belongs to the process fd
	// refers to unless the pid was recycled in between; the liveness check
	// below catches that case.
	if why := r.notOurDaemon(pid); why != "" {
		unix.Close(fd)
		return nil, why
	}
	if unix.PidfdSendSignal(fd, 0, nil, 0) != nil {
		unix.Close(fd)
		return nil, fmt.Sprintf("process %d is gone", pid)
	}
	var stop [2]int
	if err := unix.Pipe2(stop[:], unix.O_CLOEXEC); err != nil {
		unix.Close(fd)
		return nil, fmt.Sprintf("pipe: %v", err)
	}

	exited := make(chan struct{})
	p := &daemonProc{pid: pid, adopted: true, exited: exited}
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		if watchPidfd(fd, stop[0]) {
			p.status = "exited (adopted process: status unknown)"
			close(exited)
		}
	}()
	p.signal = func(sig syscall.Signal) error {
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && err != unix.ESRCH {
			return err
		}
		return nil
	}
	var once sync.Once
	p.release = func() {
		once.Do(func() {
			unix.Close(stop[1]) // wakes the watcher with POLLHUP
			<-watcherDone
			unix.Close(stop[0])
			unix.Close(fd)
		})
	}
	return p, ""
}

// watchPidfd blocks until the process behind pidfd exits (true) or stopFd
// becomes readable or hung up (false). A pidfd polls readable once its
// process has exited, whoever its parent is.
func watchPidfd(pidfd, stopFd int) bool {
	fds := []unix.PollFd{
		{Fd: int32(pidfd), Events: unix.POLLIN},
		{Fd: int32(stopFd), Events: unix.POLLIN},
	}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Cannot poll: fall back to probing with signal 0.
			return pollPidfd(pidfd, stopFd)
		}
		if fds[0].Revents != 0 {
			return true
		}
		if fds[1].Revents != 0 {
			return false
		}
	}
}

// pollPidfd is watchPidfd's fallback: it probes every 100 ms.
func pollPidfd(pidfd, stopFd int) bool {
	for {
		if unix.PidfdSendSignal(pidfd, 0, nil, 0) == unix.ESRCH {
			return true
		}
		fds := []unix.PollFd{{Fd: int32(stopFd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 100); n > 0 {
			return false
		}
	}
}

// notOurDaemon says why pid is not a containerd started on our config file,
// or "" if it is. Both checks matter: the pid file may be stale and its pid
// recycled, possibly by another containerd (the host's) that must never be
// adopted, let alone killed.
func (r *remote) notOurDaemon(pid int) string {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	exe, err := os.Readlink(filepath.Join(proc, "exe"))
	if err != nil {
		return fmt.Sprintf("cannot read the executable of process %d: %v", pid, err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)") // upgraded in place
	if exe != r.binary && filepath.Base(exe) != filepath.Base(r.binary) {
		return fmt.Sprintf("process %d runs %s, not %s", pid, exe, r.binary)
	}
	raw, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil {
		return fmt.Sprintf("cannot read the command line of process %d: %v", pid, err)
	}
	args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	for i, a := range args {
		switch {
		case (a == "--config" || a == "-c") && i+1 < len(args) && args[i+1] == r.configFile,
			a == "--config="+r.configFile, a == "-c="+r.configFile:
			return ""
		}
	}
	return fmt.Sprintf("process %d does not run on %s", pid, r.configFile)
}

// readPidFile returns the pid in the pid file, or 0.
func (r *remote) readPidFile() int {
	b, err := os.ReadFile(r.pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func (r *remote) writePidFile(pid int) error {
	return writeFileAtomic(r.pidFile, []byte(strconv.Itoa(pid)), 0o644)
}
