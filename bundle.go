package libcontainerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DockerContainerBundlePath is the label key pointing to the container's
// bundle directory.
const DockerContainerBundlePath = "com.docker/engine.bundle.path"

// WithBundle creates the bundle directory bundleDir and records it in the
// container's DockerContainerBundlePath label. Under a user namespace every
// path component the remapped root cannot traverse gets a private
// ".<uid>.<gid>" sibling, owned by that root, as moby does.
func WithBundle(bundleDir string, ociSpec *specs.Spec) containerd.NewContainerOpts {
	return withBundle(bundleDir, ociSpec, nil)
}

// withBundle is WithBundle that also reports, through created, the deepest
// directory it made, so a failed create can remove exactly that.
func withBundle(bundleDir string, ociSpec *specs.Spec, created *string) containerd.NewContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		uid, gid := specUser(ociSpec)
		if uid == 0 && gid == 0 {
			made, err := mkdirAllNew(bundleDir, 0o755)
			if err != nil {
				return err
			}
			if created != nil {
				*created = made
			}
			c.Labels[DockerContainerBundlePath] = bundleDir
			return nil
		}
		p := string(filepath.Separator)
		for _, part := range strings.Split(filepath.Clean(bundleDir), string(filepath.Separator))[1:] {
			p = filepath.Join(p, part)
			fi, err := os.Stat(p)
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			if err == nil && fi.Mode()&0o001 != 0 {
				continue // others may traverse it: the remapped root can too
			}
			p = fmt.Sprintf("%s.%d.%d", p, uid, gid)
			if err := os.Mkdir(p, 0o700); err != nil {
				if !os.IsExist(err) {
					return err
				}
				continue
			}
			if err := os.Chown(p, int(uid), int(gid)); err != nil {
				return err
			}
			if created != nil && *created == "" {
				*created = p
			}
		}
		c.Labels[DockerContainerBundlePath] = p
		return nil
	}
}

// mkdirAllNew is os.MkdirAll that returns the topmost directory it had to
// create ("" if dir existed), which is what cleanup must remove.
func mkdirAllNew(dir string, mode os.FileMode) (string, error) {
	top := ""
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !os.IsNotExist(err) {
			return "", err
		}
		top = p
		if parent := filepath.Dir(p); parent == p {
			break
		}
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return "", err
	}
	return top, nil
}

// specUser returns the host uid and gid of the container's root user: 0, 0
// without a user namespace. A nil spec or Linux section is no namespace.
func specUser(spec *specs.Spec) (uint32, uint32) {
	if spec == nil || spec.Linux == nil {
		return 0, 0
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return hostID(0, spec.Linux.UIDMappings), hostID(0, spec.Linux.GIDMappings)
		}
	}
	return 0, 0
}

// hostID maps a container ID to the host through an ID map. Unlike moby's,
// an empty range never matches (moby's Size-1 underflows to match all) and
// the arithmetic is done wide so it cannot wrap.
func hostID(id uint32, mappings []specs.LinuxIDMapping) uint32 {
	for _, m := range mappings {
		if m.Size == 0 {
			continue
		}
		if uint64(id) >= uint64(m.ContainerID) && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			host := uint64(m.HostID) + uint64(id) - uint64(m.ContainerID)
			if host > uint64(^uint32(0)) {
				return 0
			}
			return uint32(host)
		}
	}
	return 0
}
