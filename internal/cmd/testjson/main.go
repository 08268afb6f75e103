// Command testjson reads `go test -json` on stdin, prints the usual `go test`
// text, and fails when a package that must run tests ran none or skipped any.
// CI uses it so that an integration suite that could not run (no root, no
// containerd) is a failure, never a quiet pass.
//
// Usage: go test -json ./... | testjson -require PKG [-require PKG ...]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type counts struct{ passed, failed, skipped int }

type requireFlag []string

func (r *requireFlag) String() string     { return strings.Join(*r, ",") }
func (r *requireFlag) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	var required requireFlag
	flag.Var(&required, "require", "package that must run at least one test and skip none (repeatable)")
	flag.Parse()

	perPkg := map[string]*counts{}
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// Build errors and other non-JSON lines pass through as they are.
			fmt.Println(sc.Text())
			continue
		}
		if ev.Output != "" {
			fmt.Print(ev.Output)
		}
		c := perPkg[ev.Package]
		if c == nil {
			c = &counts{}
			perPkg[ev.Package] = c
		}
		switch {
		case ev.Test == "" && ev.Action == "fail":
			pkgFailed = true
		case ev.Test == "" || strings.Contains(ev.Test, "/"):
			// Package lines and subtests: the top-level test counts once.
		case ev.Action == "pass":
			c.passed++
		case ev.Action == "fail":
			c.failed++
		case ev.Action == "skip":
			c.skipped++
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testjson: read:", err)
		os.Exit(1)
	}

	var total counts
	for _, c := range perPkg {
		total.passed += c.passed
		total.failed += c.failed
		total.skipped += c.skipped
	}
	bad := pkgFailed || total.failed > 0
	for _, pkg := range required {
		c := perPkg[pkg]
		switch {
		case c == nil || c.passed+c.failed == 0:
			fmt.Fprintf(os.Stderr, "FAIL: %s ran no test: the integration suite did not run\n", pkg)
			bad = true
		case c.skipped > 0:
			fmt.Fprintf(os.Stderr, "FAIL: %s skipped %d test(s): a skipped integration test is a failure\n", pkg, c.skipped)
			bad = true
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", total.passed, total.failed, total.skipped)
	if bad {
		os.Exit(1)
	}
}
