package libcontainerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/content/local"
	"github.com/containerd/containerd/images"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The unpack step on a local content store, no daemon. The integration
// tests drive it through containerd, where its success path needs a working
// criu; here that path runs on any host.

func putBlob(t *testing.T, store content.Store, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	w, err := content.OpenWriter(ctx, store, content.WithRef(mediaType))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, int64(len(b)), ""); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: w.Digest(), Size: int64(len(b))}
}

func putIndex(t *testing.T, store content.Store, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(ocispec.Index{Manifests: manifests})
	if err != nil {
		t.Fatal(err)
	}
	return putBlob(t, store, ocispec.MediaTypeImageIndex, b)
}

// criuTar is a tar of a directory holding files, made by containerd's
// archive code as containerd makes the criu image.
func criuTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	src := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rc := archive.Diff(context.Background(), "", src)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestUnpackCheckpoint(t *testing.T) {
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := putBlob(t, store, images.MediaTypeContainerd1CheckpointConfig, []byte("spec"))
	criu := putBlob(t, store, images.MediaTypeContainerd1Checkpoint, criuTar(t, map[string]string{"inventory.img": "inv", "pages-1.img": "pages"}))
	ctx := context.Background()

	t.Run("criu image", func(t *testing.T) {
		dir := t.TempDir()
		if err := unpackCheckpoint(ctx, store, putIndex(t, store, criu, spec), dir); err != nil {
			t.Fatal(err)
		}
		if got := dirNames(t, dir); !reflect.DeepEqual(got, []string{"inventory.img", "pages-1.img"}) {
			t.Fatalf("unpacked %v", got)
		}
	})
	for name, index := range map[string]ocispec.Descriptor{
		"no criu image": putIndex(t, store, spec),
		"not an index":  putBlob(t, store, ocispec.MediaTypeImageIndex, []byte("{not json")),
		"missing index": {MediaType: ocispec.MediaTypeImageIndex, Digest: criu.Digest[:len(criu.Digest)-1] + "0", Size: 2},
	} {
		index := index
		t.Run(name, func(t *testing.T) {
			err := unpackCheckpoint(ctx, store, index, t.TempDir())
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := err.(interface{ System() }); !ok {
				t.Fatalf("%v is not a System error", err)
			}
		})
	}
}

func TestPrepareAndClearCheckpointDir(t *testing.T) {
	logger := log.L
	base := t.TempDir()

	missing := filepath.Join(base, "missing")
	created, err := prepareCheckpointDir(missing)
	if err != nil || !created {
		t.Fatalf("missing dir: created %v, err %v", created, err)
	}
	if err := os.WriteFile(filepath.Join(missing, "half"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	clearCheckpointDir(missing, created, logger)
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("created dir not removed: %v", err)
	}

	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	created, err = prepareCheckpointDir(empty)
	if err != nil || created {
		t.Fatalf("empty dir: created %v, err %v", created, err)
	}
	if err := os.MkdirAll(filepath.Join(empty, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	clearCheckpointDir(empty, created, logger)
	if names := dirNames(t, empty); len(names) != 0 {
		t.Fatalf("caller's dir not emptied: %v", names)
	}

	if err := os.WriteFile(filepath.Join(empty, "x"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", empty, filepath.Join(empty, "x")} {
		if _, err := prepareCheckpointDir(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if _, ok := err.(interface{ InvalidParameter() }); !ok {
			t.Errorf("%q: %v is not InvalidParameter", bad, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(empty, "x")); err != nil || !bytes.Equal(b, []byte("keep")) {
		t.Fatalf("refused dir changed: %q %v", b, err)
	}
}

func TestIsRuncRuntime(t *testing.T) {
	for name, want := range map[string]bool{
		"io.containerd.runc.v2":            true,
		"io.containerd.runc.v1":            true,
		"io.containerd.runc":               true,
		"io.containerd":                    false, // containerd's own check panics here
		"io.containerd.runcx.v1":           false,
		"io.containerd.runsc.v1":           false,
		"/usr/bin/containerd-shim-runc-v2": false,
		"":                                 false,
	} {
		if got := isRuncRuntime(name); got != want {
			t.Errorf("isRuncRuntime(%q) = %v, want %v", name, got, want)
		}
	}
}
