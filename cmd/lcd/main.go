// Command lcd drives libcontainerd end to end: `lcd tour` walks through what
// the library does (the demo), `lcd run` runs a command in a busybox
// container, `lcd events` prints containerd's task events as a daemon sees
// them. By default it starts its own private containerd through the
// supervisor package, so nothing needs to be running.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/containerd/log"

	"github.com/lcdkit/libcontainerd/internal/rootfs"
)

const usage = `lcd drives libcontainerd against containerd.

Usage:
  lcd tour   [--state DIR]                                   walk through the library, end to end (make demo)
  lcd run    [-i] [-t] [--rootfs DIR] [--address SOCK] -- CMD...   run CMD in a busybox container
  lcd events [--address SOCK] [--namespace NS]               print task events as they arrive

Without --address, lcd starts a private containerd of its own in a temp dir
and removes it afterwards. Run "lcd COMMAND --help" for a command's flags.
`

// exitError carries a process exit status through to main.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// The library logs through containerd/log; a demo shows only warnings.
	_ = log.SetLevel("warn")
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "tour":
		err = tourCmd(args)
	case "run":
		err = runCmd(args)
	case "events":
		err = eventsCmd(args)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "lcd: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		os.Exit(exit.code)
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintf(os.Stderr, "lcd: %v\n", err)
		os.Exit(1)
	}
}

// newFlagSet makes a subcommand's flags, with a usage text from its
// synopsis and a sentence about it.
func newFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("lcd "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lcd %s %s\n\n%s\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// preflight says, in one line, why this host cannot run containers.
func preflight(embedded bool) error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	bins := []string{"runc", "containerd-shim-runc-v2"}
	if embedded {
		bins = append([]string{"containerd"}, bins...)
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not installed: run make deps", bin)
		}
	}
	if _, err := os.Stat(rootfs.BusyboxPath); err != nil {
		return errors.New("busybox-static not installed: run make deps")
	}
	return nil
}
