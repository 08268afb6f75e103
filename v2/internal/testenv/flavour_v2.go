package testenv

import (
	"context"

	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	containerd "github.com/containerd/containerd/v2/client"
)

// ListPlugins asks containerd for every plugin: the v2 client takes the
// filters as variadic arguments, the v1.7 client's as a slice
// (internal/testenv/flavour_v1.go).
func ListPlugins(ctx context.Context, cli *containerd.Client) (*introspection.PluginsResponse, error) {
	return cli.IntrospectionService().Plugins(ctx)
}
