package shimopts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/containerd/plugin"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// runhcsPrefix starts the type of every Windows (runhcs) runtime, e.g.
// io.containerd.runhcs.v1.
const runhcsPrefix = "io.containerd.runhcs."

// maxProblems caps how many problems one error lists, so that a map with
// thousands of bad keys does not produce a megabyte of message.
const maxProblems = 10

// maxKeyInMessage caps how much of one key an error message quotes.
const maxKeyInMessage = 128

// Generate converts the options from a daemon's runtime config into the runtime options for runtimeType.
//
// The result is a non-nil pointer to a protobuf message, ready for
// containerd.WithRuntime: *options.Options from
// github.com/containerd/containerd/api/types/runc/options for
// io.containerd.runc.v1 and io.containerd.runc.v2, and *runtimeoptions_v1.Options
// from github.com/containerd/containerd/pkg/runtimeoptions/v1 for any other
// runtime type. A nil or empty opts gives the empty message of that type.
//
// Every error is an InvalidParameter (moby's marker and
// errors.Is(err, errdefs.ErrInvalidArgument)): an empty runtime type, the
// legacy io.containerd.runtime.v1.linux runtime, a Windows-only runtime, and
// options that do not fit the message — an unknown key, two spellings of the
// same key, a value of the wrong type, a number that is negative, fractional
// or too large for its field. The message names every offending key (up to
// ten of them).
func Generate(runtimeType string, opts map[string]interface{}) (interface{}, error) {
	switch {
	case strings.TrimSpace(runtimeType) == "":
		return nil, errclass.InvalidParameter(errors.New("shimopts: runtime type must not be empty"))
	case runtimeType == plugin.RuntimeRuncV1, runtimeType == plugin.RuntimeRuncV2:
		out, err := decode(runtimeType, opts, runcSchema)
		if err != nil {
			return nil, err // not out: a nil *T would make a non-nil interface
		}
		return out, nil
	case runtimeType == plugin.RuntimeLinuxV1:
		return nil, errclass.InvalidParameter(fmt.Errorf(
			"shimopts: runtime type %q (containerd's legacy v1 Linux runtime) is not supported: "+
				"it was deprecated in containerd 1.4 and removed in 2.0; use %q",
			runtimeType, plugin.RuntimeRuncV2))
	case strings.HasPrefix(runtimeType, runhcsPrefix):
		return nil, errclass.InvalidParameter(fmt.Errorf(
			"shimopts: runtime type %q is a Windows (runhcs) runtime and is not supported on %s",
			runtimeType, runtime.GOOS))
	default:
		out, err := decode(runtimeType, opts, genericSchema)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// runcSchema lists every field of the runc shim's options. TestSchemaCoversStruct
// checks it against the struct, so a new field in containerd is noticed.
var runcSchema = newSchema(
	map[string]string{
		"CriuPath": "containerd removed it from the runc shim's options",
	},
	boolField("NoPivotRoot", func(o *runcoptions.Options) *bool { return &o.NoPivotRoot }),
	boolField("NoNewKeyring", func(o *runcoptions.Options) *bool { return &o.NoNewKeyring }),
	stringField("ShimCgroup", func(o *runcoptions.Options) *string { return &o.ShimCgroup }),
	uint32Field("IoUid", func(o *runcoptions.Options) *uint32 { return &o.IoUid }),
	uint32Field("IoGid", func(o *runcoptions.Options) *uint32 { return &o.IoGid }),
	stringField("BinaryName", func(o *runcoptions.Options) *string { return &o.BinaryName }),
	stringField("Root", func(o *runcoptions.Options) *string { return &o.Root }),
	boolField("SystemdCgroup", func(o *runcoptions.Options) *bool { return &o.SystemdCgroup }),
	stringField("CriuImagePath", func(o *runcoptions.Options) *string { return &o.CriuImagePath }),
	stringField("CriuWorkPath", func(o *runcoptions.Options) *string { return &o.CriuWorkPath }),
	stringField("TaskApiAddress", func(o *runcoptions.Options) *string { return &o.TaskApiAddress }),
	uint32Field("TaskApiVersion", func(o *runcoptions.Options) *uint32 { return &o.TaskApiVersion }),
)

// genericSchema lists every field of the generic runtime options.
var genericSchema = newSchema(
	nil,
	stringField("TypeUrl", func(o *runtimeoptions.Options) *string { return &o.TypeUrl }),
	stringField("ConfigPath", func(o *runtimeoptions.Options) *string { return &o.ConfigPath }),
	bytesField("ConfigBody", func(o *runtimeoptions.Options) *[]byte { return &o.ConfigBody }),
)

// field is one settable field of an options message T.
type field[T any] struct {
	name string                  // the Go field name, e.g. "BinaryName"
	set  func(o *T, v any) error // converts v and stores it; the error does not name the key
}

// schema is what decode needs to know about an options message T.
type schema[T any] struct {
	fields  []field[T]
	byKey   map[string]int    // every accepted spelling of a key -> index into fields
	removed map[string]string // every spelling of a field containerd removed -> why it is refused
}

func newSchema[T any](removed map[string]string, fields ...field[T]) *schema[T] {
	s := &schema[T]{
		fields:  fields,
		byKey:   make(map[string]int),
		removed: make(map[string]string),
	}
	for i, f := range fields {
		for _, k := range spellings(f.name) {
			s.byKey[k] = i
		}
	}
	for name, why := range removed {
		for _, k := range spellings(name) {
			s.removed[k] = why
		}
	}
	return s
}

// spellings returns the keys go-toml v1 tries, in its order, for a struct
// field without a toml tag: the name itself, lower case, upper case, and with
// the first letter lowered.
func spellings(name string) []string {
	return []string{
		name,
		strings.ToLower(name),
		strings.ToUpper(name),
		strings.ToLower(name[:1]) + name[1:],
	}
}

// decode fills a new T from opts. Keys are visited in sorted order so that
// the error message is the same from one run to the next.
func decode[T any](runtimeType string, opts map[string]any, s *schema[T]) (*T, error) {
	out := new(T)
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var problems []string
	setBy := make(map[int]string, len(opts))
	for _, k := range keys {
		i, ok := s.byKey[k]
		if !ok {
			problems = append(problems, s.unknownKey(k))
			continue
		}
		if prev, dup := setBy[i]; dup {
			problems = append(problems, fmt.Sprintf("options %s and %s both set %s",
				quoteKey(prev), quoteKey(k), s.fields[i].name))
			continue
		}
		setBy[i] = k
		if err := s.fields[i].set(out, opts[k]); err != nil {
			problems = append(problems, fmt.Sprintf("option %s: %v", quoteKey(k), err))
		}
	}
	if len(problems) == 0 {
		return out, nil
	}
	if n := len(problems); n > maxProblems {
		problems = append(problems[:maxProblems], fmt.Sprintf("and %d more", n-maxProblems))
	}
	return nil, errclass.InvalidParameter(fmt.Errorf("shimopts: invalid options for runtime type %q: %s",
		runtimeType, strings.Join(problems, "; ")))
}

// unknownKey describes a key that is not a field, with a hint when the key
// looks like one.
func (s *schema[T]) unknownKey(k string) string {
	if why, ok := s.removed[k]; ok {
		return fmt.Sprintf("option %s is not supported: %s", quoteKey(k), why)
	}
	msg := fmt.Sprintf("unknown option %s", quoteKey(k))
	norm := normalize(k)
	for _, f := range s.fields {
		if normalize(f.name) == norm {
			return msg + fmt.Sprintf(" (did you mean %q?)", f.name)
		}
	}
	return msg
}

// normalize folds case and drops the separators of snake_case and
// kebab-case, so that "binary_name" and "Binaryname" both hint at BinaryName.
func normalize(k string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
}

// quoteKey quotes k for an error message, shortening a very long key.
func quoteKey(k string) string {
	if len(k) > maxKeyInMessage {
		return strconv.Quote(k[:maxKeyInMessage]) + "..."
	}
	return strconv.Quote(k)
}

func boolField[T any](name string, ptr func(*T) *bool) field[T] {
	return field[T]{name: name, set: func(o *T, v any) error {
		b, err := toBool(v)
		if err == nil {
			*ptr(o) = b
		}
		return err
	}}
}

func stringField[T any](name string, ptr func(*T) *string) field[T] {
	return field[T]{name: name, set: func(o *T, v any) error {
		str, err := toString(v)
		if err == nil {
			*ptr(o) = str
		}
		return err
	}}
}

func uint32Field[T any](name string, ptr func(*T) *uint32) field[T] {
	return field[T]{name: name, set: func(o *T, v any) error {
		u, err := toUint(v, math.MaxUint32)
		if err == nil {
			*ptr(o) = uint32(u)
		}
		return err
	}}
}

func bytesField[T any](name string, ptr func(*T) *[]byte) field[T] {
	return field[T]{name: name, set: func(o *T, v any) error {
		b, err := toBytes(v)
		if err == nil {
			*ptr(o) = b
		}
		return err
	}}
}

func toBool(v any) (bool, error) {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Bool {
		return rv.Bool(), nil
	}
	return false, wrongType("a boolean", v)
}

func toString(v any) (string, error) {
	if _, isNumber := v.(json.Number); !isNumber {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.String {
			return rv.String(), nil
		}
	}
	return "", wrongType("a string", v)
}

// toUint converts a number of any Go numeric type to an integer in
// [0, limit]. JSON gives float64 (or json.Number), TOML gives int64; a float
// is accepted when it is a whole number.
func toUint(v any, limit uint64) (uint64, error) {
	if n, ok := v.(json.Number); ok {
		return numberToUint(string(n), limit)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i := rv.Int()
		if i < 0 {
			return 0, fmt.Errorf("%d is negative (want a whole number from 0 to %d)", i, limit)
		}
		if uint64(i) > limit {
			return 0, outOfRange(strconv.FormatInt(i, 10), limit)
		}
		return uint64(i), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := rv.Uint()
		if u > limit {
			return 0, outOfRange(strconv.FormatUint(u, 10), limit)
		}
		return u, nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		text := formatFloat(f)
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return 0, fmt.Errorf("%s is not a finite number (want a whole number from 0 to %d)", text, limit)
		case f < 0:
			return 0, fmt.Errorf("%s is negative (want a whole number from 0 to %d)", text, limit)
		case f != math.Trunc(f):
			return 0, fmt.Errorf("%s is not a whole number (want a whole number from 0 to %d)", text, limit)
		case f > float64(limit):
			return 0, outOfRange(text, limit)
		}
		return uint64(f), nil
	}
	return 0, wrongType(fmt.Sprintf("a whole number from 0 to %d", limit), v)
}

// formatFloat writes f as a JSON or TOML author would, without an exponent
// unless the number is very large or very small.
func formatFloat(f float64) string {
	if a := math.Abs(f); a < 1e21 && (a == 0 || a >= 1e-6) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// numberToUint handles a json.Number, which a daemon gets when it decodes its
// config with json.Decoder.UseNumber.
func numberToUint(s string, limit uint64) (uint64, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return toUint(i, limit)
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return toUint(u, limit)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, outOfRange(s, limit)
		}
		return 0, fmt.Errorf("%q is not a number (want a whole number from 0 to %d)", s, limit)
	}
	return toUint(f, limit)
}

func outOfRange(text string, limit uint64) error {
	return fmt.Errorf("%s is out of range (want a whole number from 0 to %d)", text, limit)
}

// toBytes accepts the bytes themselves as a string or []byte (a TOML blob is
// text), or, as go-toml does, a list of numbers from 0 to 255.
func toBytes(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return bytes.Clone(b), nil
	case json.Number:
		return nil, wrongType("a string or a list of bytes", v)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return []byte(rv.String()), nil
	case reflect.Slice, reflect.Array:
		out := make([]byte, rv.Len())
		for i := range out {
			u, err := toUint(rv.Index(i).Interface(), math.MaxUint8)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = byte(u)
		}
		return out, nil
	}
	return nil, wrongType("a string or a list of bytes", v)
}

func wrongType(want string, v any) error {
	return fmt.Errorf("want %s, got %s", want, describe(v))
}

// describe names the kind of value v without printing it, since it may be
// large.
func describe(v any) string {
	if v == nil {
		return "null"
	}
	if _, ok := v.(json.Number); ok {
		return "a number (json.Number)"
	}
	var what string
	switch reflect.ValueOf(v).Kind() {
	case reflect.Bool:
		what = "a boolean"
	case reflect.String:
		what = "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		what = "a number"
	case reflect.Map, reflect.Struct:
		what = "an object"
	case reflect.Slice, reflect.Array:
		what = "a list"
	default:
		what = "a value"
	}
	return fmt.Sprintf("%s (%T)", what, v)
}
