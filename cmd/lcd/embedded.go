package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"

	"github.com/lcdkit/libcontainerd/internal/dial"
	"github.com/lcdkit/libcontainerd/internal/rootfs"
	"github.com/lcdkit/libcontainerd/supervisor"
)

// snapshotters that cannot initialise on a plain host; the demo uses no
// snapshots at all.
var unusedPlugins = []string{
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
}

// host is where lcd runs containers: a containerd (its own, or one given by
// --address), a busybox rootfs and a state dir for bundles.
type host struct {
	dir      string // everything lcd made; removed by close when ownDir
	ownDir   bool
	daemon   supervisor.Daemon // nil with --address
	stop     context.CancelFunc
	cli      *containerd.Client
	rootfs   string
	runcRoot string // "" means runc's default
}

// openHost starts a private containerd under dir (a new temp dir when
// empty), or connects to address when it is set.
func openHost(ctx context.Context, dir, address string) (_ *host, err error) {
	// Not the named result: a failing return sets that to nil before the
	// deferred cleanup runs.
	if address != "" {
		if _, err := os.Stat(address); err != nil {
			return nil, fmt.Errorf("no containerd socket at %s", address)
		}
	}
	h := &host{dir: dir}
	if h.dir == "" {
		// Short, because the socket path must fit in 104 bytes.
		if h.dir, err = os.MkdirTemp("", "lcd-"); err != nil {
			return nil, err
		}
		h.ownDir = true
	} else if err := os.MkdirAll(h.dir, 0o711); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if address == "" {
		logFile, err := os.OpenFile(filepath.Join(h.dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		supCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		h.stop = stop
		h.daemon, err = supervisor.Start(supCtx, filepath.Join(h.dir, "root"), filepath.Join(h.dir, "state"),
			supervisor.WithCRIDisabled(),
			supervisor.WithDisabledPlugins(unusedPlugins...),
			supervisor.WithLogWriter(logFile),
			supervisor.WithHealthCheck(250*time.Millisecond, time.Second, 3),
			supervisor.WithRestartBackoff(50*time.Millisecond, time.Second))
		if err != nil {
			logFile.Close()
			return nil, fmt.Errorf("start containerd: %w", err)
		}
		address = h.daemon.Address()
		h.runcRoot = filepath.Join(h.dir, "runc")
	}
	h.cli, err = containerd.New(address,
		containerd.WithTimeout(5*time.Second),
		containerd.WithDialOpts(dial.Options()),
		containerd.WithDefaultRuntime("io.containerd.runc.v2"))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	// The v2 client connects lazily: its New succeeds on any path, so ask
	// once that something serves there (the v1.7 client's New already has).
	probeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ok, perr := h.cli.IsServing(probeCtx); !ok || perr != nil {
		if perr == nil {
			perr = errors.New("not serving")
		}
		err = fmt.Errorf("connect to containerd at %s: %w", address, perr)
		return nil, err
	}
	return h, nil
}

// withHost runs fn on a host (see openHost) with a context that Ctrl-C or
// SIGTERM cancels, and closes the host afterwards.
func withHost(address string, fn func(ctx context.Context, h *host) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := openHost(ctx, "", address)
	if err != nil {
		return err
	}
	defer h.close()
	return fn(ctx, h)
}

// buildRootfs builds the busybox rootfs inside the host's dir.
func (h *host) buildRootfs() error {
	h.rootfs = filepath.Join(h.dir, "rootfs")
	return rootfs.Build(h.rootfs)
}

func (h *host) bundles() string { return filepath.Join(h.dir, "bundles") }

// runcOptions keeps runc's state under the host's dir for a private daemon.
func (h *host) runcOptions() *runcoptions.Options {
	return &runcoptions.Options{Root: h.runcRoot}
}

// daemonPID is the private containerd's pid (0 with --address).
func (h *host) daemonPID() int {
	if h.daemon == nil {
		return 0
	}
	return supervisor.PID(h.daemon)
}

// close disconnects, stops a private containerd and removes what lcd made.
func (h *host) close() error {
	if h.cli != nil {
		h.cli.Close()
	}
	var err error
	if h.daemon != nil {
		h.stop()
		err = h.daemon.WaitTimeout(20 * time.Second)
	}
	if h.ownDir {
		if rerr := os.RemoveAll(h.dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}
