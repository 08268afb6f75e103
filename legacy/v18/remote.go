package v18

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/log"

	"github.com/lcdkit/libcontainerd/internal/dial"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/legacy"
	"github.com/lcdkit/libcontainerd/supervisor"
)

const (
	// Runtime is the shim every client creates containers on.
	Runtime = "io.containerd.runc.v2"
	// socketName is the socket an existing daemon is looked for at in the
	// state dir when neither WithRemoteAddr nor WithStartDaemon is given
	// (where the supervisor puts it).
	socketName = "containerd.sock"
	// dialTimeout bounds connecting to containerd.
	dialTimeout = 15 * time.Second
	// stopTimeout bounds waiting for a daemon the Remote started to stop.
	stopTimeout = 30 * time.Second
)

// remote is the Remote New returns.
type remote struct {
	rootDir, stateDir string

	// Settings, from the options.
	address     string
	startDaemon bool
	daemonOpts  []supervisor.DaemonOpt

	cli        *containerd.Client
	daemon     supervisor.Daemon // nil unless started here
	stopDaemon context.CancelFunc

	mu      sync.Mutex
	clients []*client
	closed  bool
	once    sync.Once
}

// New connects to containerd and returns the Remote. Without options it
// connects to <stateDir>/containerd.sock; WithRemoteAddr names another
// socket, and WithStartDaemon starts a daemon through package supervisor
// (root <rootDir>/daemon, state and socket in stateDir, CRI disabled), which
// Cleanup stops again.
func New(rootDir, stateDir string, options ...RemoteOption) (Remote, error) {
	if rootDir == "" || stateDir == "" {
		return nil, errclass.InvalidParameter(errors.New("empty root or state directory"))
	}
	r := &remote{rootDir: rootDir, stateDir: stateDir}
	for _, o := range options {
		if o == nil {
			continue
		}
		if err := o.Apply(r); err != nil {
			return nil, errclass.InvalidParameter(err)
		}
	}
	if r.startDaemon && r.address != "" {
		return nil, errclass.InvalidParameter(errors.New("WithRemoteAddr and WithStartDaemon exclude each other: a daemon started here listens where the supervisor puts it"))
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, errclass.InvalidParameter(fmt.Errorf("state directory: %w", err))
	}
	if r.startDaemon {
		ctx, cancel := context.WithCancel(context.Background())
		opts := append([]supervisor.DaemonOpt{supervisor.WithCRIDisabled()}, r.daemonOpts...)
		d, err := supervisor.Start(ctx, rootDir, stateDir, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		r.daemon, r.stopDaemon, r.address = d, cancel, d.Address()
	}
	if r.address == "" {
		r.address = filepath.Join(stateDir, socketName)
	}
	if _, err := os.Stat(r.address); err != nil {
		// Not worth a dial that would wait out its timeout.
		r.stop()
		return nil, errclass.Unavailable(fmt.Errorf("no containerd socket at %s: %w", r.address, err))
	}
	cli, err := containerd.New(r.address, containerd.WithTimeout(dialTimeout), containerd.WithDialOpts(dial.Options()))
	if err != nil {
		r.stop()
		return nil, errclass.Classify(fmt.Errorf("connect to containerd at %s: %w", r.address, err))
	}
	r.cli = cli
	return r, nil
}

// NewClient returns a client for namespace. Its containers' bundles live in
// <stateDir>/bundles/<namespace>, so namespaces never share a directory.
func (r *remote) NewClient(namespace string, backend Backend) (Client, error) {
	if err := identifiers.Validate(namespace); err != nil {
		return nil, errclass.InvalidParameter(fmt.Errorf("namespace %q: %w", namespace, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errclass.Unavailable(errors.New("remote has been cleaned up"))
	}
	bundles := filepath.Join(r.stateDir, "bundles", namespace)
	lc, err := legacy.NewClient(context.Background(), r.cli, bundles, namespace, relay{backend})
	if err != nil {
		return nil, err
	}
	c := &client{Client: lc}
	r.clients = append(r.clients, c)
	return c, nil
}

// Cleanup closes every client and the connection, then stops a daemon this
// Remote started and waits (bounded) until the supervisor has removed its
// pid file and sockets. Containers of an existing daemon keep running.
func (r *remote) Cleanup() {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		clients := r.clients
		r.clients = nil
		r.mu.Unlock()
		for _, c := range clients {
			if err := c.close(); err != nil {
				log.L.WithError(err).Warn("remote cleanup: closing a client")
			}
		}
		if err := r.cli.Close(); err != nil {
			log.L.WithError(err).Debug("remote cleanup: closing the containerd connection")
		}
		r.stop()
	})
}

// stop stops a daemon started here, if any, and waits for it.
func (r *remote) stop() {
	if r.daemon == nil {
		return
	}
	r.stopDaemon()
	if err := r.daemon.WaitTimeout(stopTimeout); err != nil {
		log.L.WithError(err).Error("remote cleanup: containerd did not stop")
	}
}

// remoteOption is every RemoteOption of this package.
type remoteOption func(*remote) error

func (o remoteOption) Apply(r Remote) error {
	rr, ok := r.(*remote)
	if !ok {
		return fmt.Errorf("option applied to a %T, not this package's Remote", r)
	}
	return o(rr)
}

// WithRemoteAddr connects to the containerd listening on addr.
func WithRemoteAddr(addr string) RemoteOption {
	return remoteOption(func(r *remote) error {
		if addr == "" {
			return errors.New("empty containerd address")
		}
		r.address = addr
		return nil
	})
}

// WithStartDaemon makes New start a containerd of its own (through package
// supervisor, which restarts it if it dies or hangs) that Cleanup stops.
func WithStartDaemon(start bool) RemoteOption {
	return remoteOption(func(r *remote) error {
		r.startDaemon = start
		return nil
	})
}

// WithLogLevel sets the log level of a daemon started here.
func WithLogLevel(lvl string) RemoteOption {
	return WithDaemonOpts(supervisor.WithLogLevel(lvl))
}

// WithDaemonOpts adds supervisor options for a daemon started here.
func WithDaemonOpts(opts ...supervisor.DaemonOpt) RemoteOption {
	return remoteOption(func(r *remote) error {
		r.daemonOpts = append(r.daemonOpts, opts...)
		return nil
	})
}
