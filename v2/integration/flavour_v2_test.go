package integration

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// flavourSpec is the legacy fixture's spec helper without the legacy client,
// which the v2 flavour does not have (genv2's rule
// spec-without-legacy-fixture points the remote and plugin tests here).
func flavourSpec(t testing.TB, ctx context.Context, id string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flavourBaseline takes the leak baseline once f's connection is up and its
// client's event stream has started: the v2 client connects lazily, so
// right after NewClient neither has its goroutines yet, and a baseline taken
// then would count them as leaked (the v1.7 client dials inside New). genv2's
// rule baseline-after-connect points the chaos test here.
func flavourBaseline(t testing.TB, f *fixture) leakBaseline {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	if ok, err := f.raw.IsServing(ctx); !ok || err != nil {
		t.Fatalf("containerd not serving: %v", err)
	}
	// The subscription starts on its own goroutine: wait (bounded) until
	// the count stops changing.
	settled := time.NewTicker(100 * time.Millisecond)
	defer settled.Stop()
	prev := runtime.NumGoroutine()
	for stable := 0; stable < 3; {
		select {
		case <-ctx.Done():
			t.Fatal("goroutine count did not settle")
		case <-settled.C:
		}
		if n := runtime.NumGoroutine(); n == prev {
			stable++
		} else {
			prev, stable = n, 0
		}
	}
	return takeBaseline()
}
