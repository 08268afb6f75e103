package v24

import (
	"context"
	"errors"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewClientRejectsNilContainerdClient(t *testing.T) {
	_, err := NewClient(context.Background(), nil, t.TempDir(), "ns", nil)
	if !errors.Is(err, cerrdefs.ErrInvalidArgument) {
		t.Fatalf("NewClient(nil client) = %v, want InvalidParameter", err)
	}
}
