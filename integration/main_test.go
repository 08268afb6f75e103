// Package integration holds the tests that run the library against a real
// containerd: a private daemon per test binary, started by internal/testenv.
package integration

import (
	"os"
	"testing"

	"github.com/lcdkit/libcontainerd/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, func(e *testenv.Env) { env = e }))
}
