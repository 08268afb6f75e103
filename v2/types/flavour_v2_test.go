package types_test

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mobyTypes is the moby release whose libcontainerd/types this package must
// match exactly (SPEC §13): the oldest engine line on the v2 client.
const mobyTypes = "github.com/docker/docker@v28.5.2+incompatible"

// TestMatchesMobyV28Types compares every exported declaration of this
// package (Linux files) with moby v28.5.2's libcontainerd/types, read from
// the module cache (downloaded through the Go proxy if missing): same names,
// same kinds, same types and signatures (parameter names aside).
func TestMatchesMobyV28Types(t *testing.T) {
	out, err := exec.Command("go", "mod", "download", "-json", mobyTypes).Output()
	if err != nil {
		t.Skipf("cannot download %s for the comparison: %v", mobyTypes, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %s", mobyTypes, out)
	}
	want := exportedAPI(t, filepath.Join(mod.Dir, "libcontainerd", "types"))
	got := exportedAPI(t, ".")
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("missing %s: moby has %s", name, w)
		} else if g != w {
			t.Errorf("%s differs:\n ours: %s\n moby: %s", name, g, w)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("extra %s (moby has none): %s", name, g)
		}
	}
}

// exportedAPI maps each exported name declared by dir's Linux source files
// to its declaration, printed without comments, bodies or parameter names.
func exportedAPI(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	api := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || strings.HasSuffix(name, "_windows.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					api[d.Name.Name] = "func " + render(t, fset, stripParamNames(d.Type))
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							kind := "type "
							if s.Assign.IsValid() {
								kind = "type = "
							}
							api[s.Name.Name] = kind + render(t, fset, stripParamNames(s.Type))
						}
					case *ast.ValueSpec:
						for i, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							v := d.Tok.String() + " "
							if s.Type != nil {
								v += render(t, fset, s.Type)
							}
							if i < len(s.Values) {
								v += " = " + render(t, fset, s.Values[i])
							}
							api[n.Name] = v
						}
					}
				}
			}
		}
	}
	return api
}

// stripParamNames drops parameter and result names from every function type
// in n, one unnamed field per parameter.
func stripParamNames(n ast.Expr) ast.Expr {
	ast.Inspect(n, func(m ast.Node) bool {
		if ft, ok := m.(*ast.FuncType); ok {
			ft.Params = unnamed(ft.Params)
			ft.Results = unnamed(ft.Results)
		}
		return true
	})
	return n
}

func unnamed(l *ast.FieldList) *ast.FieldList {
	if l == nil {
		return nil
	}
	out := &ast.FieldList{}
	for _, f := range l.List {
		for i := 0; i < max(len(f.Names), 1); i++ {
			out.List = append(out.List, &ast.Field{Type: f.Type})
		}
	}
	return out
}

func render(t *testing.T, fset *token.FileSet, n ast.Node) string {
	t.Helper()
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, n); err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
