package v18

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd"
	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/legacy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStatusOf(t *testing.T) {
	for in, want := range map[containerd.ProcessStatus]Status{
		containerd.Running: StatusRunning,
		containerd.Created: StatusCreated,
		containerd.Stopped: StatusStopped,
		containerd.Paused:  StatusPaused,
		containerd.Pausing: StatusPausing,
		containerd.Unknown: StatusUnknown,
		"something-new":    StatusUnknown,
	} {
		if got := statusOf(in); got != want {
			t.Errorf("statusOf(%q) = %q, want %q", in, got, want)
		}
	}
}

type recordingBackend struct{ got []EventInfo }

func (b *recordingBackend) ProcessEvent(_ string, _ EventType, ei EventInfo) error {
	b.got = append(b.got, ei)
	return nil
}

func TestRelayCarriesEventInfo(t *testing.T) {
	b := &recordingBackend{}
	at := time.Now()
	in := legacy.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 3, ExitCode: 4, ExitedAt: at, OOMKilled: true}
	if err := (relay{b}).ProcessEvent("c", EventExit, in); err != nil {
		t.Fatal(err)
	}
	want := EventInfo{ContainerID: "c", ProcessID: "e", Pid: 3, ExitCode: 4, ExitedAt: at, OOMKilled: true}
	if len(b.got) != 1 || b.got[0] != want {
		t.Fatalf("got %+v, want %+v", b.got, want)
	}
	if err := (relay{}).ProcessEvent("c", EventExit, in); err != nil {
		t.Fatalf("nil backend: %v", err)
	}
}

// Bad options fail before anything is started or dialled.
func TestNewRejectsBadOptions(t *testing.T) {
	cases := map[string][]RemoteOption{
		"address and start": {WithRemoteAddr("/run/x.sock"), WithStartDaemon(true)},
		"empty address":     {WithRemoteAddr("")},
	}
	for name, opts := range cases {
		if _, err := New(t.TempDir(), t.TempDir(), opts...); !errors.Is(err, cerrdefs.ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want InvalidParameter", name, err)
		}
	}
	if _, err := New("", t.TempDir()); !errors.Is(err, cerrdefs.ErrInvalidArgument) {
		t.Errorf("empty root dir: %v", err)
	}
	if _, err := New(t.TempDir(), t.TempDir(), WithRemoteAddr(filepath.Join(t.TempDir(), "none.sock"))); !errors.Is(err, cerrdefs.ErrUnavailable) {
		t.Errorf("missing socket: %v, want Unavailable", err)
	}
}
