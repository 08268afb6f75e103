package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWithDetectLocalBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(filepath.Dir(self), defaultBinary)

	r := &remote{binary: defaultBinary}
	if err := WithDetectLocalBinary()(r); err != nil || r.binary != defaultBinary {
		t.Fatalf("with no containerd beside the test binary: binary %s, err %v; want it unchanged", r.binary, err)
	}

	if err := os.WriteFile(local, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Skipf("cannot write beside the test binary: %v", err)
	}
	t.Cleanup(func() { os.Remove(local) })
	r = &remote{binary: defaultBinary}
	if err := WithDetectLocalBinary()(r); err != nil {
		t.Fatal(err)
	}
	if r.binary != local {
		t.Fatalf("binary = %s, want the local %s", r.binary, local)
	}

	os.Remove(local)
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(local) })
	if err := WithDetectLocalBinary()(&remote{binary: defaultBinary}); err == nil {
		t.Fatal("a directory named containerd beside the binary was accepted")
	}
}
