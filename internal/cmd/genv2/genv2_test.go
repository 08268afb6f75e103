package main

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// The committed v2 tree is what the root sources generate: a root change
// without `make gen-v2`, or a hand edit of a generated file, fails here.
func TestV2TreeIsCurrent(t *testing.T) {
	src, err := readSources("../../..", "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := generate(src)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := compare("../../..", out.files)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	if len(diffs) > 0 {
		t.Log("v2/ is stale: run `make gen-v2` and commit v2/")
	}
}

func TestGenerateRewritesAndLeavesOutV1Only(t *testing.T) {
	src := map[string][]byte{
		"pkg/a.go": []byte(`package pkg

import (
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"

	"github.com/lcdkit/libcontainerd/legacy"
	"github.com/lcdkit/libcontainerd/types"
)

// Kept uses the client.
func Kept(c *containerd.Client, _ cio.IO, _ types.Backend) {}

// usesLegacy is v1 only.
func usesLegacy() legacy.Client { return nil }

// usesUser uses a v1-only declaration.
func usesUser() { _ = usesLegacy() }

func TestFaultMatrix() {
	a := 1
	l := usesLegacy()
	_ = l
	_ = a
}
`),
		"pkg/flavour_v1.go": []byte("package pkg\n"),
		"legacy/l.go":       []byte("package legacy\n"),
	}
	prunedFuncs["pkg/a.go TestFaultMatrix"] = "test"
	defer delete(prunedFuncs, "pkg/a.go TestFaultMatrix")
	defer withoutTextRules()()
	out, err := generate(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.files) != 1 {
		t.Fatalf("generated %v, want only v2/pkg/a.go", sortedKeys(out.files))
	}
	got := string(out.files["v2/pkg/a.go"])
	if !strings.HasPrefix(got, headerPrefix+"pkg/a.go; DO NOT EDIT.\n") {
		t.Errorf("no header:\n%s", got)
	}
	for _, want := range []string{
		`containerd "github.com/containerd/containerd/v2/client"`,
		`"github.com/containerd/containerd/v2/pkg/cio"`,
		`"github.com/lcdkit/libcontainerd/v2/types"`,
		"func Kept(", "a := 1", "_ = a",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, gone := range []string{"libcontainerd/legacy\"", "func usesLegacy", "func usesUser", "usesLegacy is v1 only", "l := usesLegacy", "_ = l"} {
		if strings.Contains(strings.SplitN(got, "\n\n", 2)[1], gone) {
			t.Errorf("%q kept in:\n%s", gone, got)
		}
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "a.go", got, 0); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownContainerdImportFails(t *testing.T) {
	defer withoutTextRules()()
	src := map[string][]byte{"a.go": []byte("package a\n\nimport _ \"github.com/containerd/containerd/snapshots\"\n")}
	if _, err := generate(src); err == nil || !strings.Contains(err.Error(), "no rule") {
		t.Fatalf("err = %v, want a missing-rule error", err)
	}
}

// withoutTextRules clears the table's text rules (their root files are not in
// a synthetic tree) and returns what puts them back.
func withoutTextRules() func() {
	saved := textRules
	textRules = nil
	return func() { textRules = saved }
}
