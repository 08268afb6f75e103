package libcontainerd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	libtypes "github.com/lcdkit/libcontainerd/types"
)

// stdinCloseTimeout bounds the CloseIO behind a stdin Close, which runs on a
// fresh context: the caller's may be long gone by then.
const stdinCloseTimeout = 30 * time.Second

// fifoPath names a process's FIFO in the bundle dir: <bundle>/<processID>-<stream>.
// The process ID is the container ID for the init process.
func fifoPath(bundle, processID, stream string) string {
	return filepath.Join(bundle, processID+"-"+stream)
}

// newFIFOSet describes a process's FIFOs: stdout always, stdin only when
// asked, stderr only without a terminal (a terminal merges it into stdout).
// Closing the set removes the files.
func newFIFOSet(bundle, processID string, withStdin, withTerminal bool) *cio.FIFOSet {
	config := cio.Config{Terminal: withTerminal, Stdout: fifoPath(bundle, processID, "stdout")}
	if withStdin {
		config.Stdin = fifoPath(bundle, processID, "stdin")
	}
	if !withTerminal {
		config.Stderr = fifoPath(bundle, processID, "stderr")
	}
	return cio.NewFIFOSet(config, removeFIFOs(config.Stdin, config.Stdout, config.Stderr))
}

// fifoSetFromPaths describes the FIFOs of a running process, as containerd
// reports them, for reattaching.
func fifoSetFromPaths(stdin, stdout, stderr string, terminal bool) *cio.FIFOSet {
	config := cio.Config{Stdin: stdin, Stdout: stdout, Stderr: stderr, Terminal: terminal}
	return cio.NewFIFOSet(config, removeFIFOs(stdin, stdout, stderr))
}

func removeFIFOs(paths ...string) func() error {
	return func() error {
		var firstErr error
		for _, p := range paths {
			// Only local FIFO paths: a task someone else made may log to a
			// URI (binary://, file://) that is not ours to remove.
			if p == "" || !filepath.IsAbs(p) {
				continue
			}
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) && firstErr == nil {
				firstErr = err
			}
		}
		return firstErr
	}
}

// newIO opens the FIFOs and hands them to the caller's callback, with stdin
// wrapped so that closing it also closes the process's stdin in the shim.
// On any failure nothing is left open or on disk.
func (c *Client) newIO(fifos *cio.FIFOSet, stdin *stdinSync, attach libtypes.StdioCallback) (cio.IO, error) {
	// Not the caller's context: the FIFOs outlive this call, and a
	// cancelled context would tear down a running process's stdio.
	dio, err := cio.NewDirectIO(context.Background(), fifos)
	if err != nil {
		if dio != nil {
			dio.Cancel() // NewDirectIO already closed and removed the FIFOs
		}
		return nil, err
	}
	if dio.Stdin != nil {
		stdin.pipe = dio.Stdin
		dio.Stdin = stdin
	}
	rio, err := attach(dio)
	if err != nil {
		closeIO(dio)
		return nil, err
	}
	if rio == nil {
		rio = dio
	}
	return rio, nil
}

// clearStaleFIFOs makes sure processID's FIFOs are not another live
// process's: opening them again would steal its stdio, and cleaning up after
// a failed create would delete them. A leftover of a process that no longer
// exists (its task removed behind our back) is removed.
func (c *Client) clearStaleFIFOs(ctx context.Context, fifos *cio.FIFOSet, containerID, execID string) error {
	if _, err := os.Lstat(fifos.Stdout); err != nil {
		return nil
	}
	if _, err := c.getProcess(ctx, containerID, execID); err == nil {
		return errIDInUse(nil)
	} else if !errclass.IsNotFound(err) {
		return err
	}
	return removeFIFOs(fifos.Stdin, fifos.Stdout, fifos.Stderr)()
}

// stdinSync is the stdin the caller's callback receives. Its first Close
// closes our FIFO writer and asks the shim to close its end (CloseIO): the
// process sees EOF only once both are closed. The shim call needs the
// process to exist, so until the process is published (init: after create;
// exec: after start, when the shim opens an exec's stdin) a Close only
// records the wish, and publish carries it out. No goroutine waits for it.
type stdinSync struct {
	pipe io.WriteCloser

	mu        sync.Mutex
	closeIO   func() error // set by publish
	dropped   bool         // the process was never created
	requested bool         // Close came before publish

	once     sync.Once
	closeErr error
}

// Write writes to the process's stdin FIFO.
func (s *stdinSync) Write(p []byte) (int, error) { return s.pipe.Write(p) }

// Close closes stdin, once; later calls return the first result.
func (s *stdinSync) Close() error {
	s.once.Do(func() {
		s.closeErr = s.pipe.Close()
		s.mu.Lock()
		closeIO := s.closeIO
		if closeIO == nil && !s.dropped {
			s.requested = true
		}
		s.mu.Unlock()
		if closeIO != nil {
			if err := closeIO(); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
		}
	})
	return s.closeErr
}

// publish makes the process's CloseIO available, running it now if Close
// already came; its error is the caller's to log (Close has returned).
func (s *stdinSync) publish(closeIO func() error) error {
	s.mu.Lock()
	s.closeIO = closeIO
	requested := s.requested
	s.mu.Unlock()
	if requested {
		return closeIO()
	}
	return nil
}

// drop forgets a pending close: the process it was for was never created.
func (s *stdinSync) drop() {
	s.mu.Lock()
	s.dropped = true
	s.requested = false
	s.mu.Unlock()
}

// ignoreTransportClosing drops the error in-flight calls get when
// containerd's socket closes under them, as moby does for CloseIO.
func ignoreTransportClosing(err error) error {
	if err != nil && strings.Contains(err.Error(), "transport is closing") {
		return nil
	}
	return err
}

// closeStdin runs CloseIO(stdin) for one process on a fresh,
// bounded context.
func (c *Client) closeStdin(containerID, execID string) error {
	ctx, cancel := context.WithTimeout(c.withNamespace(context.Background()), stdinCloseTimeout)
	defer cancel()
	_, err := c.client.TaskService().CloseIO(ctx, &tasks.CloseIORequest{ContainerID: containerID, ExecID: execID, Stdin: true})
	if err = ignoreTransportClosing(err); err != nil {
		return wrapErrorf(err, fmt.Sprintf("close stdin of %s", processName(containerID, execID)))
	}
	return nil
}

func processName(containerID, execID string) string {
	if execID == "" {
		return containerID
	}
	return containerID + "/" + execID
}
