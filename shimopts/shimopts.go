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

	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/containerd/plugin"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// At later containerd patches runcoptions.Options is a deprecated alias, but
// it is the type moby asserts, so it is the one named here.
//lint:file-ignore SA1019 moby's import path for the runc options

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
// github.com/containerd/containerd/runtime/v2/runc/options (moby's import; at
// later containerd patches it is an alias of api/types/runc/options.Options)
// for io.containerd.runc.v1 and io.containerd.runc.v2, and
// *runtimeoptions_v1.Options from
// github.com/containerd/containerd/pkg/runtimeoptions/v1 for any other
// runtime type. A nil or empty opts gives the empty message of that type.
// The keys accepted are the fields of the message in the caller's module
// graph, so TaskApiAddress and TaskApiVersion, for example, are accepted only
// with a containerd that has them.
//
// Every error is an InvalidParameter (moby's marker and
// errors.Is(err, errdefs.ErrInvalidArgument)): an empty runtime type, the
// legacy io.containerd.runtime.v1.linux runtime, a Windows-only runtime, and
// options that do not fit the message — an unknown or unsupported key (such
// as CriuPath), two spellings of the same key, a value of the wrong type, a
// number that is negative, fractional or too large for its field. The message
// names every offending key (up to ten of them).
func Generate(runtimeType string, opts map[string]interface{}) (interface{}, error) {
	switch {
	case strings.TrimSpace(runtimeType) == "":
		return nil, errclass.InvalidParameter(errors.New("shimopts: runtime type must not be empty"))
	case runtimeType == runtimeRuncV1, runtimeType == plugin.RuntimeRuncV2:
		out, err := decode(runtimeType, opts, runcSchema)
		if err != nil {
			return nil, err // not out: a nil *T would make a non-nil interface
		}
		return out, nil
	case runtimeType == runtimeLinuxV1:
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

// The schemas are read off the generated structs, not written out, because
// the fields differ between containerd patches (v1.7.12 has no
// TaskApiAddress or TaskApiVersion) and the consumer's graph picks the patch.
var (
	runcSchema    = newSchema[runcoptions.Options](runcRefused)
	genericSchema = newSchema[runtimeoptions.Options](nil)
)

// runcRefused lists the runc options fields refused by name, with why.
var runcRefused = map[string]string{
	// Still a (deprecated) field at v1.7.12, gone later: refused at every
	// patch so that one config means the same everywhere.
	"CriuPath": "runc ignores it, and containerd deprecated it and then removed it from the runc shim's options",
}

// field is one settable field of an options message T.
type field[T any] struct {
	name string                  // the Go field name, e.g. "BinaryName"
	set  func(o *T, v any) error // converts v and stores it; the error does not name the key
}

// schema is what decode needs to know about an options message T.
type schema[T any] struct {
	fields  []field[T]
	byKey   map[string]int    // every accepted spelling of a key -> index into fields
	removed map[string]string // every spelling of a refused key -> why it is refused
}

// newSchema reflects over the exported fields of the struct T. A field named
// in refused, or whose type setterFor cannot fill, is not settable; a key
// naming it is refused with the reason rather than called unknown.
func newSchema[T any](refused map[string]string) *schema[T] {
	rt := reflect.TypeOf((*T)(nil)).Elem()
	if rt.Kind() != reflect.Struct {
		panic(fmt.Sprintf("shimopts: %v is not a struct", rt))
	}
	why := make(map[string]string, len(refused))
	for name, reason := range refused {
		why[name] = reason
	}
	s := &schema[T]{byKey: make(map[string]int), removed: make(map[string]string)}
	for i := 0; i < rt.NumField(); i++ {
		sf := rt.Field(i)
		if !sf.IsExported() { // protoimpl's state, sizeCache, unknownFields
			continue
		}
		if _, ok := why[sf.Name]; ok {
			continue
		}
		set := setterFor(sf)
		if set == nil {
			why[sf.Name] = fmt.Sprintf("shimopts cannot set a field of type %v", sf.Type)
			continue
		}
		index := i // loop variables are per loop before Go 1.22
		s.fields = append(s.fields, field[T]{name: sf.Name, set: func(o *T, v any) error {
			return set(reflect.ValueOf(o).Elem().Field(index), v)
		}})
	}

	// A spelling two fields share (say "ab" of Ab and AB) goes to the field
	// it names exactly, or else to none: picking one would be a guess.
	owners := make(map[string][]int)
	for i, f := range s.fields {
		for _, k := range spellings(f.name) {
			if o := owners[k]; len(o) == 0 || o[len(o)-1] != i {
				owners[k] = append(o, i)
			}
		}
	}
	for k, o := range owners {
		if len(o) == 1 {
			s.byKey[k] = o[0]
			continue
		}
		names := make([]string, len(o))
		for j, i := range o {
			names[j] = s.fields[i].name
			if names[j] == k {
				s.byKey[k] = i
			}
		}
		if _, ok := s.byKey[k]; !ok {
			s.removed[k] = "it could mean any of " + strings.Join(names, ", ") + "; use the exact field name"
		}
	}

	// Sorted so that a spelling two refused names share gets the same reason
	// every run; a live key always wins.
	names := make([]string, 0, len(why))
	for name := range why {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, k := range spellings(name) {
			_, live := s.byKey[k]
			_, taken := s.removed[k]
			if !live && !taken {
				s.removed[k] = why[name]
			}
		}
	}
	return s
}

// setterFor returns how to store a config value into a field of sf's type, or
// nil when the type is not one a config value maps onto: only the
// predeclared types of proto3 scalars are settable. Skipped: oneof members,
// named types (protobuf enums), pointers (proto3 optional, messages), maps,
// repeated fields other than bytes, and floats, which no options message has.
func setterFor(sf reflect.StructField) func(dst reflect.Value, v any) error {
	if _, oneof := sf.Tag.Lookup("protobuf_oneof"); oneof {
		return nil
	}
	t := sf.Type
	if t.PkgPath() != "" { // a named type, not a predeclared or composite one
		return nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return func(dst reflect.Value, v any) error {
			b, err := toBool(v)
			if err == nil {
				dst.SetBool(b)
			}
			return err
		}
	case reflect.String:
		return func(dst reflect.Value, v any) error {
			str, err := toString(v)
			if err == nil {
				dst.SetString(str)
			}
			return err
		}
	case reflect.Uint32, reflect.Uint64:
		limit := uint64(math.MaxUint64) >> (64 - t.Bits())
		return func(dst reflect.Value, v any) error {
			u, err := toUint(v, limit)
			if err == nil {
				dst.SetUint(u)
			}
			return err
		}
	case reflect.Int32, reflect.Int64:
		hi := int64(math.MaxInt64) >> (64 - t.Bits())
		return func(dst reflect.Value, v any) error {
			i, err := toInt(v, -hi-1, hi)
			if err == nil {
				dst.SetInt(i)
			}
			return err
		}
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Uint8 && e.PkgPath() == "" {
			return func(dst reflect.Value, v any) error {
				b, err := toBytes(v)
				if err == nil {
					dst.SetBytes(b)
				}
				return err
			}
		}
	}
	return nil
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

// whole is the range of an integer field, for its error messages.
type whole struct {
	min int64
	max uint64
}

func (r whole) String() string { return fmt.Sprintf("a whole number from %d to %d", r.min, r.max) }

// checkFloat rejects a float that is not a whole number in r. The upper
// bound is exclusive (max+1) because float64(max) rounds up for 64-bit max.
func checkFloat(f float64, r whole) error {
	text := formatFloat(f)
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return fmt.Errorf("%s is not a finite number (want %v)", text, r)
	case f < 0 && r.min == 0:
		return fmt.Errorf("%s is negative (want %v)", text, r)
	case f != math.Trunc(f):
		return fmt.Errorf("%s is not a whole number (want %v)", text, r)
	case f < float64(r.min) || f >= float64(r.max)+1:
		return outOfRange(text, r)
	}
	return nil
}

// toUint converts a number of any Go numeric type to an integer in
// [0, limit]. JSON gives float64 (or json.Number), TOML gives int64; a float
// is accepted when it is a whole number.
func toUint(v any, limit uint64) (uint64, error) {
	r := whole{0, limit}
	if n, ok := v.(json.Number); ok {
		return fromNumber(string(n), r, func(x any) (uint64, error) { return toUint(x, limit) })
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i := rv.Int()
		if i < 0 {
			return 0, fmt.Errorf("%d is negative (want %v)", i, r)
		}
		if uint64(i) > limit {
			return 0, outOfRange(strconv.FormatInt(i, 10), r)
		}
		return uint64(i), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := rv.Uint()
		if u > limit {
			return 0, outOfRange(strconv.FormatUint(u, 10), r)
		}
		return u, nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if err := checkFloat(f, r); err != nil {
			return 0, err
		}
		return uint64(f), nil
	}
	return 0, wrongType(r.String(), v)
}

// toInt is toUint for a signed field, with values in [lo, hi].
func toInt(v any, lo, hi int64) (int64, error) {
	r := whole{lo, uint64(hi)}
	if n, ok := v.(json.Number); ok {
		return fromNumber(string(n), r, func(x any) (int64, error) { return toInt(x, lo, hi) })
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i := rv.Int()
		if i < lo || i > hi {
			return 0, outOfRange(strconv.FormatInt(i, 10), r)
		}
		return i, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := rv.Uint()
		if u > uint64(hi) {
			return 0, outOfRange(strconv.FormatUint(u, 10), r)
		}
		return int64(u), nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if err := checkFloat(f, r); err != nil {
			return 0, err
		}
		return int64(f), nil
	}
	return 0, wrongType(r.String(), v)
}

// formatFloat writes f as a JSON or TOML author would, without an exponent
// unless the number is very large or very small.
func formatFloat(f float64) string {
	if a := math.Abs(f); a < 1e21 && (a == 0 || a >= 1e-6) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// fromNumber handles a json.Number, which a daemon gets when it decodes its
// config with json.Decoder.UseNumber: it parses s as the Go number it spells
// and hands that to conv.
func fromNumber[N any](s string, r whole, conv func(any) (N, error)) (N, error) {
	var zero N
	i, errInt := strconv.ParseInt(s, 10, 64)
	if errInt == nil {
		return conv(i)
	}
	u, errUint := strconv.ParseUint(s, 10, 64)
	if errUint == nil {
		return conv(u)
	}
	// An integer beyond 64 bits fits no field; as a float it could round
	// into range (-9223372036854775809 to math.MinInt64).
	if errors.Is(errInt, strconv.ErrRange) || errors.Is(errUint, strconv.ErrRange) {
		return zero, outOfRange(s, r)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return zero, outOfRange(s, r)
		}
		return zero, fmt.Errorf("%q is not a number (want %v)", s, r)
	}
	return conv(f)
}

func outOfRange(text string, r whole) error {
	return fmt.Errorf("%s is out of range (want %v)", text, r)
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
