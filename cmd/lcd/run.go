package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

// cleanupTimeout bounds deleting what a command made, on a fresh context.
const cleanupTimeout = 30 * time.Second

func runCmd(args []string) error {
	fs := newFlagSet("run", "[-i] [-t] [--rootfs DIR] [--address SOCK] -- CMD...",
		"Runs CMD in a busybox container; lcd's exit status is the container's.")
	interactive := fs.Bool("i", false, "keep stdin open and connect it to the container")
	tty := fs.Bool("t", false, "allocate a terminal (resized on SIGWINCH)")
	rootfsDir := fs.String("rootfs", "", "root filesystem to run in (default: a busybox-static rootfs lcd builds)")
	address := fs.String("address", "", "containerd socket (default: start a private containerd)")
	ns := fs.String("namespace", "lcd", "containerd namespace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		fs.Usage()
		return errors.New("run: no command given")
	}
	if *tty && *interactive && !isTerminal(os.Stdin.Fd()) {
		// A terminal fed from a file or pipe hangs up at once, as with
		// docker run -it.
		return errors.New("the input device is not a TTY")
	}
	if err := preflight(*address == ""); err != nil {
		return err
	}
	return withHost(*address, func(ctx context.Context, h *host) error {
		root := *rootfsDir
		if root == "" {
			if err := h.buildRootfs(); err != nil {
				return fmt.Errorf("build rootfs: %w", err)
			}
			root = h.rootfs
		}
		code, err := runContainer(ctx, h, *ns, root, cmd, *interactive, *tty)
		if err != nil {
			// As a shell (and docker run) report a command that cannot run.
			switch msg := err.Error(); {
			case strings.Contains(msg, "no such file or directory"), strings.Contains(msg, "executable file not found"):
				fmt.Fprintf(os.Stderr, "lcd: %v\n", err)
				return exitError{127}
			case strings.Contains(msg, "permission denied"):
				fmt.Fprintf(os.Stderr, "lcd: %v\n", err)
				return exitError{126}
			}
			return err
		}
		if code != 0 {
			return exitError{int(code)}
		}
		return nil
	})
}

func randomID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// runContainer runs cmd to completion and returns its exit status.
func runContainer(ctx context.Context, h *host, ns, root string, cmd []string, interactive, tty bool) (uint32, error) {
	events := newEventLog(nil, "")
	client, err := libcontainerd.NewClient(ctx, h.cli, h.bundles(), ns, events)
	if err != nil {
		return 0, err
	}
	defer client.(*libcontainerd.Client).Close()

	id := randomID("lcd-run-")
	specOpts := []oci.SpecOpts{
		oci.WithRootFSPath(root), oci.WithRootFSReadonly(), oci.WithDefaultPathEnv, oci.WithProcessArgs(cmd...),
		oci.WithMounts([]specs.Mount{{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}}}),
	}
	if tty {
		specOpts = append(specOpts, oci.WithTTY)
	}
	spec, err := oci.GenerateSpec(namespaces.WithNamespace(ctx, ns), nil, &containers.Container{ID: id}, specOpts...)
	if err != nil {
		return 0, err
	}
	ctr, err := client.NewContainer(ctx, id, spec, "io.containerd.runc.v2", h.runcOptions())
	if err != nil {
		return 0, err
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	defer ctr.Delete(cleanup)

	stdio := &terminalIO{interactive: interactive}
	task, err := ctr.NewTask(ctx, "", interactive, stdio.attach)
	if err != nil {
		return 0, err
	}
	if tty {
		restore, err := makeRaw(os.Stdin.Fd())
		if err == nil {
			defer restore()
		}
		resize := func() {
			if ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ); err == nil {
				_ = task.Resize(ctx, uint32(ws.Col), uint32(ws.Row))
			}
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				resize()
			}
		}()
		defer func() { close(winch) }()
		resize()
	}
	if err := task.Start(ctx); err != nil {
		_ = task.ForceDelete(cleanup)
		return 0, err
	}
	ei, err := events.waitExit(ctx, id, id, 24*time.Hour)
	if err != nil {
		// Interrupted: stop the container, then report.
		_ = task.ForceDelete(cleanup)
		return 0, err
	}
	if _, err := task.Delete(cleanup); err != nil {
		return 0, err
	}
	return ei.ExitCode, nil
}

// terminalIO connects a process's FIFOs to lcd's own stdio.
type terminalIO struct {
	interactive bool
	wg          sync.WaitGroup
}

// stdioWaiter makes the IO's Wait cover our output copiers, so Delete
// returns only once everything the process wrote has been printed.
type stdioWaiter struct {
	*cio.DirectIO
	wg *sync.WaitGroup
}

func (w stdioWaiter) Wait() { w.wg.Wait(); w.DirectIO.Wait() }

func (t *terminalIO) attach(dio *cio.DirectIO) (cio.IO, error) {
	if dio.Stdin != nil {
		// Not waited for: reading our stdin may block for ever.
		go func() {
			_, _ = io.Copy(dio.Stdin, os.Stdin)
			dio.Stdin.Close()
		}()
	}
	for _, p := range []struct {
		dst io.Writer
		src io.Reader
	}{{os.Stdout, dio.Stdout}, {os.Stderr, dio.Stderr}} {
		if p.src == nil {
			continue
		}
		t.wg.Add(1)
		go func(dst io.Writer, src io.Reader) {
			defer t.wg.Done()
			_, _ = io.Copy(dst, src)
		}(p.dst, p.src)
	}
	return stdioWaiter{dio, &t.wg}, nil
}

var _ types.StdioCallback = (&terminalIO{}).attach

func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// makeRaw puts the terminal on fd in raw mode, as cfmakeraw does, and
// returns how to restore it.
func makeRaw(fd uintptr) (func(), error) {
	old, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(int(fd), unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(int(fd), unix.TCSETS, old) }, nil
}
