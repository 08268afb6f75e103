// Command testjson reads `go test -json` on stdin, prints the usual `go test`
// text, and fails when a package that must run tests ran none or skipped any.
// CI uses it so that an integration suite that could not run (no root, no
// containerd) is a failure, never a quiet pass.
//
// The only skips it accepts are the tests named with -allow-skip, each under
// a reason group (criu=TestX: a test that needs a working criu). For each
// group it prints how many of its tests skipped and why, skipped or not, so
// a host that cannot run them says so in every run.
//
// Usage: go test -json ./... | testjson -require PKG [-require PKG ...] [-allow-skip GROUP=TEST ...]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type counts struct{ passed, failed, skipped int }

type listFlag []string

func (r *listFlag) String() string     { return strings.Join(*r, ",") }
func (r *listFlag) Set(v string) error { *r = append(*r, v); return nil }

// allowedSkips maps a top-level test name to its group.
type allowedSkips map[string]string

func parseAllowed(specs []string) (allowedSkips, error) {
	a := allowedSkips{}
	for _, s := range specs {
		group, test, ok := strings.Cut(s, "=")
		if !ok || group == "" || test == "" || strings.Contains(test, "/") {
			return nil, fmt.Errorf("-allow-skip %q: want GROUP=TopLevelTestName", s)
		}
		a[test] = group
	}
	return a, nil
}

func main() {
	var required, allow listFlag
	flag.Var(&required, "require", "package that must run at least one test and skip none (repeatable)")
	flag.Var(&allow, "allow-skip", "GROUP=TEST: a top-level test that may skip, counted under GROUP (repeatable)")
	flag.Parse()
	allowed, err := parseAllowed(allow)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testjson:", err)
		os.Exit(2)
	}
	if !run(os.Stdin, os.Stdout, os.Stderr, required, allowed) {
		os.Exit(1)
	}
}

// testHeader matches go test's own lines around a test's output; fileLine
// the file:line prefix of a t.Log or t.Skip message.
var (
	testHeader = regexp.MustCompile(`^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP))`)
	fileLine   = regexp.MustCompile(`^\s*[^\s:]+\.go:\d+: `)
)

// recapLines is how many of a failed test's file:line messages the recap
// at the end repeats.
const recapLines = 5

// run copies the stream's text to out and reports whether it passes.
func run(in io.Reader, out, errOut io.Writer, required []string, allowed allowedSkips) bool {
	perPkg := map[string]*counts{}
	pkgFailed := false
	lastLine := map[[2]string]string{} // (package, test) → its last output line
	// (package, test) → its last few file:line messages, for the failures'
	// recap: a long log (the daemon's, on failure) can bury the test's own
	// lines, and CI keeps only the end of the output.
	messages := map[[2]string][]string{}
	type skip struct{ pkg, test, reason string }
	var allowedSkipped, forbiddenSkipped []skip
	var failedTests [][2]string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// Build errors and other non-JSON lines pass through as they are.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		if ev.Output != "" {
			fmt.Fprint(out, ev.Output)
			if ev.Test != "" && !testHeader.MatchString(ev.Output) && strings.TrimSpace(ev.Output) != "" {
				key := [2]string{ev.Package, ev.Test}
				lastLine[key] = strings.TrimSpace(fileLine.ReplaceAllString(ev.Output, ""))
				if fileLine.MatchString(ev.Output) {
					m := append(messages[key], strings.TrimSpace(ev.Output))
					if len(m) > recapLines {
						m = m[len(m)-recapLines:]
					}
					messages[key] = m
				}
			}
		}
		c := perPkg[ev.Package]
		if c == nil {
			c = &counts{}
			perPkg[ev.Package] = c
		}
		switch {
		case ev.Test == "" && ev.Action == "fail":
			pkgFailed = true
		case ev.Action == "fail":
			failedTests = append(failedTests, [2]string{ev.Package, ev.Test})
			if !strings.Contains(ev.Test, "/") {
				c.failed++
			}
		case ev.Test == "" || strings.Contains(ev.Test, "/"):
			// Package lines and subtests: the top-level test counts once.
		case ev.Action == "pass":
			c.passed++
		case ev.Action == "skip":
			c.skipped++
			s := skip{ev.Package, ev.Test, lastLine[[2]string{ev.Package, ev.Test}]}
			if _, ok := allowed[ev.Test]; ok {
				allowedSkipped = append(allowedSkipped, s)
			} else {
				forbiddenSkipped = append(forbiddenSkipped, s)
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(errOut, "testjson: read:", err)
		return false
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
		if c == nil || c.passed+c.failed == 0 {
			fmt.Fprintf(errOut, "FAIL: %s ran no test: the integration suite did not run\n", pkg)
			bad = true
			continue
		}
		n := 0
		for _, s := range forbiddenSkipped {
			if s.pkg == pkg {
				fmt.Fprintf(errOut, "FAIL: %s skipped %s (%s): a skipped integration test is a failure\n", pkg, s.test, s.reason)
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(errOut, "FAIL: %s skipped %d test(s) not allowed to skip\n", pkg, n)
			bad = true
		}
	}
	// One line per group, also when nothing skipped.
	groups := map[string][]skip{}
	for _, g := range allowed {
		groups[g] = nil
	}
	for _, s := range allowedSkipped {
		g := allowed[s.test]
		groups[g] = append(groups[g], s)
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		skips := groups[g]
		if len(skips) == 0 {
			fmt.Fprintf(out, "%s: 0 test(s) skipped\n", g)
			continue
		}
		tests := make([]string, len(skips))
		for i, s := range skips {
			tests[i] = s.test
		}
		fmt.Fprintf(out, "%s: %d test(s) skipped: %s (%s)\n", g, len(skips), strings.Join(tests, ", "), skips[0].reason)
	}
	// The failures last, where a truncated log still shows them.
	for _, f := range failedTests {
		fmt.Fprintf(errOut, "FAIL: %s %s\n", f[0], f[1])
		for _, m := range messages[f] {
			fmt.Fprintf(errOut, "    %s\n", m)
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", total.passed, total.failed, total.skipped)
	return !bad
}
