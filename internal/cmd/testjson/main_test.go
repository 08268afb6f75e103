package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const pkg = "example.com/integration"

// stream builds `go test -json` lines: each test as name → action, with
// skip tests given their go test output the way a t.Skip writes it.
func stream(t *testing.T, results ...[2]string) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	emit := func(ev event) {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	emit(event{Action: "start", Package: pkg})
	for _, r := range results {
		name, action := r[0], r[1]
		emit(event{Action: "run", Package: pkg, Test: name})
		emit(event{Action: "output", Package: pkg, Test: name, Output: "=== RUN   " + name + "\n"})
		switch action {
		case "skip":
			emit(event{Action: "output", Package: pkg, Test: name, Output: "    x_test.go:12: criu check fails on this host: vdso\n"})
		case "fail":
			emit(event{Action: "output", Package: pkg, Test: name, Output: "    x_test.go:34: exit code 255, want 137\n"})
			// A long log after the test's own lines (the daemon's, dumped on failure).
			emit(event{Action: "output", Package: pkg, Test: name, Output: "time=\"...\" level=debug msg=\"event published\"\n"})
		}
		emit(event{Action: "output", Package: pkg, Test: name, Output: "--- " + strings.ToUpper(action) + ": " + name + " (0.00s)\n"})
		emit(event{Action: action, Package: pkg, Test: name})
	}
	emit(event{Action: "pass", Package: pkg})
	return b.String()
}

func TestRun(t *testing.T) {
	allowed := allowedSkips{"TestCriu": "criu"}
	for _, tc := range []struct {
		name    string
		results [][2]string
		pass    bool
		out     string // a line out must contain
		errOut  string // a line errOut must contain
	}{
		{"all pass", [][2]string{{"TestA", "pass"}, {"TestCriu", "pass"}}, true, "criu: 0 test(s) skipped\n", ""},
		{"allowed skip", [][2]string{{"TestA", "pass"}, {"TestCriu", "skip"}}, true,
			"criu: 1 test(s) skipped: TestCriu (criu check fails on this host: vdso)\n", ""},
		{"other skip", [][2]string{{"TestA", "pass"}, {"TestB", "skip"}}, false, "criu: 0 test(s) skipped\n", "skipped TestB (criu check fails on this host: vdso)"},
		{"failure", [][2]string{{"TestA", "fail"}, {"TestCriu", "skip"}}, false, "1 failed",
			"FAIL: " + pkg + " TestA\n    x_test.go:34: exit code 255, want 137\n"},
		{"nothing ran", [][2]string{{"TestCriu", "skip"}}, false, "criu: 1 test(s) skipped", "ran no test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			got := run(strings.NewReader(stream(t, tc.results...)), &out, &errOut, []string{pkg}, allowed)
			if got != tc.pass {
				t.Errorf("run = %v, want %v\nout:\n%s\nerr:\n%s", got, tc.pass, &out, &errOut)
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("output lacks %q:\n%s", tc.out, &out)
			}
			if !strings.Contains(errOut.String(), tc.errOut) {
				t.Errorf("error output lacks %q:\n%s", tc.errOut, &errOut)
			}
		})
	}
}

func TestParseAllowed(t *testing.T) {
	if _, err := parseAllowed([]string{"criu=TestX", "criu=TestY"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"TestX", "=TestX", "criu=", "criu=TestX/sub"} {
		if _, err := parseAllowed([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
