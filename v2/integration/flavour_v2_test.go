package integration

import (
	"context"
	"testing"

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
