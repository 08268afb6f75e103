package testenv

import (
	"context"

	"github.com/containerd/containerd"
	introspection "github.com/containerd/containerd/api/services/introspection/v1"
)

// ListPlugins asks containerd for every plugin: the v1.7 client takes the
// filters as a slice, v2's as variadic (v2/internal/testenv/flavour_v2.go).
func ListPlugins(ctx context.Context, cli *containerd.Client) (*introspection.PluginsResponse, error) {
	return cli.IntrospectionService().Plugins(ctx, nil)
}
