// Package proc starts child processes that die with this one.
package proc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Child is a started child process.
type Child struct {
	Cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// Start starts cmd so that it gets SIGKILL if this process dies, even by
// kill -9. Pdeathsig fires when the *thread* that forked the child dies, so
// the fork and the Wait happen on a goroutine that locks its OS thread and
// never unlocks it: the thread lives exactly as long as the child. cmd's
// other SysProcAttr settings are kept.
func Start(cmd *exec.Cmd) (*Child, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	c := &Child{Cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Exited is closed once the child has been reaped.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Err is what Wait returned; valid once Exited is closed.
func (c *Child) Err() error { return c.err }
