// Command genv2 writes the containerd v2 flavour of the library, the module
// github.com/lcdkit/libcontainerd/v2 in v2/, from the root sources: the logic
// is written once, in the root, and reaches both flavours.
//
//	genv2 [-root DIR] [-rev REV] [-check]
//
// Each root .go file becomes the v2 file at the same path, with its imports
// moved to their containerd v2 homes by the table in table.go, the few text
// rules there applied, and the declarations that need the v1-only legacy
// API left out. The first line of each says where it came from and that it
// is not to be edited. Root files named flavour_v1*.go are v1 only; their
// counterparts are the hand-written flavour_v2*.go files in v2/, which genv2
// never touches. Every other .go file in v2/ is genv2's: one that no root file
// generates any more is removed.
//
// -check writes nothing and fails when v2/ differs from what would be
// written (make check-v2, and this package's test). -rev reads the root
// sources from a git revision instead of the working tree.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
)

func main() {
	root := flag.String("root", ".", "the repository root")
	rev := flag.String("rev", "", "read the root sources from this git revision instead of the working tree")
	check := flag.Bool("check", false, "write nothing; fail if v2/ is not what would be generated")
	verbose := flag.Bool("v", false, "print each file written and each declaration left out")
	flag.Parse()

	src, err := readSources(*root, *rev)
	if err != nil {
		fatal(err)
	}
	out, err := generate(src)
	if err != nil {
		fatal(err)
	}
	if *verbose {
		for _, f := range sortedKeys(out.files) {
			fmt.Println("gen", f)
		}
		for _, d := range out.dropped {
			fmt.Println("v1 only:", d)
		}
	}
	if *check {
		diffs, err := compare(*root, out.files)
		if err != nil {
			fatal(err)
		}
		if len(diffs) > 0 {
			for _, d := range diffs {
				fmt.Fprintln(os.Stderr, "genv2:", d)
			}
			fatal(fmt.Errorf("v2/ is stale: run `make gen-v2` and commit v2/"))
		}
		return
	}
	if err := write(*root, out.files); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "genv2:", err)
	os.Exit(1)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
