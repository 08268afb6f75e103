package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// outDir is where the v2 module lives, relative to the repository root.
const outDir = "v2"

// readSources returns the root's .go files by slash path: from the working
// tree, or from git revision rev when it is not empty.
func readSources(root, rev string) (map[string][]byte, error) {
	if rev != "" {
		return readRevision(root, rev)
	}
	src := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "bin" || rel == outDir) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src[rel] = b
		return nil
	})
	return src, err
}

func readRevision(root, rev string) (map[string][]byte, error) {
	list, err := git(root, "ls-tree", "-r", "-z", "--name-only", rev)
	if err != nil {
		return nil, err
	}
	src := map[string][]byte{}
	for _, path := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		if !strings.HasSuffix(path, ".go") || strings.HasPrefix(path, outDir+"/") || hiddenPath(path) {
			continue
		}
		b, err := git(root, "show", rev+":"+path)
		if err != nil {
			return nil, err
		}
		src[path] = b
	}
	return src, nil
}

// hiddenPath reports whether the go tool ignores path (a directory named
// testdata or starting with "." or "_").
func hiddenPath(path string) bool {
	dirs := strings.Split(path, "/")
	for _, d := range dirs[:len(dirs)-1] {
		if d == "testdata" || strings.HasPrefix(d, ".") || strings.HasPrefix(d, "_") {
			return true
		}
	}
	return false
}

func git(root string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// handWritten reports whether a file in v2/ (slash path relative to v2/) is
// not genv2's to write or remove.
func handWritten(rel string) bool {
	return strings.HasPrefix(filepath.Base(rel), "flavour_v2") || hiddenPath(rel)
}

// existing returns the generated .go files now in v2/, by slash path
// relative to the repository root, with their contents; a .go file that is
// neither generated nor hand-written is reported as an error.
func existing(root string) (map[string][]byte, []string, error) {
	files := map[string][]byte{}
	var strays []string
	dir := filepath.Join(root, outDir)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == dir {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if handWritten(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(b, []byte(headerPrefix)) {
			strays = append(strays, outDir+"/"+rel+": neither generated nor a flavour_v2*.go file")
			return nil
		}
		files[outDir+"/"+rel] = b
		return nil
	})
	return files, strays, err
}

// compare lists how v2/ differs from want.
func compare(root string, want map[string][]byte) ([]string, error) {
	have, diffs, err := existing(root)
	if err != nil {
		return nil, err
	}
	for _, path := range sortedKeys(want) {
		got, ok := have[path]
		switch {
		case !ok:
			diffs = append(diffs, path+": missing")
		case !bytes.Equal(got, want[path]):
			diffs = append(diffs, path+": differs from what its root file generates (edited by hand, or the root changed)")
		}
	}
	for _, path := range sortedKeys(have) {
		if _, ok := want[path]; !ok {
			diffs = append(diffs, path+": generated from a root file that is gone or now skipped")
		}
	}
	return diffs, nil
}

// write makes v2/ hold exactly want's generated files.
func write(root string, want map[string][]byte) error {
	have, strays, err := existing(root)
	if err != nil {
		return err
	}
	if len(strays) > 0 {
		return fmt.Errorf("%s", strings.Join(strays, "\n"))
	}
	for path := range have {
		if _, ok := want[path]; !ok {
			if err := os.Remove(filepath.Join(root, path)); err != nil {
				return err
			}
		}
	}
	for path, b := range want {
		if bytes.Equal(have[path], b) {
			continue
		}
		full := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
