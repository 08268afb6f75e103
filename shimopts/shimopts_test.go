package shimopts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/containerd/plugin"
	cproto "github.com/containerd/containerd/protobuf/proto"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"
)

// Only runtime/v2/runc/options, never also api/types/runc/options: at some
// containerd patches both register the same proto name and a binary with
// both panics at init. At later patches this one is a deprecated alias.
//lint:file-ignore SA1019 moby's import path for the runc options

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mobyInvalidParameter is the marker github.com/docker/docker/errdefs looks for.
type mobyInvalidParameter interface{ InvalidParameter() }

// checkInvalid fails the test unless err is an InvalidParameter for both
// classifiers and its message contains every one of want.
func checkInvalid(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want InvalidParameter mentioning %q", want)
	}
	if !errors.Is(err, cerrdefs.ErrInvalidArgument) {
		t.Errorf("errors.Is(%v, ErrInvalidArgument) = false", err)
	}
	if _, ok := err.(mobyInvalidParameter); !ok {
		t.Errorf("%v (%T) has no InvalidParameter() marker", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// fieldsOf returns the exported fields of the struct v points to, by name,
// so that protobuf messages compare without their internal state.
func fieldsOf(v any) map[string]any {
	rv := reflect.ValueOf(v).Elem()
	out := make(map[string]any)
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Type().Field(i); f.IsExported() {
			out[f.Name] = rv.Field(i).Interface()
		}
	}
	return out
}

func checkSame(t *testing.T, got, want any) {
	t.Helper()
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		t.Fatalf("got %T, want %T", got, want)
	}
	if g, w := fieldsOf(got), fieldsOf(want); !reflect.DeepEqual(g, w) {
		t.Errorf("got %v, want %v", g, w)
	}
}

func TestRuntimeTypes(t *testing.T) {
	for _, tc := range []struct {
		runtimeType string
		want        any      // the empty options of the expected type, or nil for an error
		wantErr     []string // what the error must mention
	}{
		{runtimeType: plugin.RuntimeRuncV2, want: &runcoptions.Options{}},
		{runtimeType: runtimeRuncV1, want: &runcoptions.Options{}},
		{runtimeType: "io.containerd.kata.v2", want: &runtimeoptions.Options{}},
		{runtimeType: "io.containerd.runsc.v1", want: &runtimeoptions.Options{}},
		{runtimeType: "io.containerd.wasmedge.v1", want: &runtimeoptions.Options{}},
		{runtimeType: "/usr/local/bin/containerd-shim-custom-v2", want: &runtimeoptions.Options{}},
		{runtimeType: "", wantErr: []string{"runtime type must not be empty"}},
		{runtimeType: "  \t", wantErr: []string{"runtime type must not be empty"}},
		{runtimeType: runtimeLinuxV1, wantErr: []string{runtimeLinuxV1, plugin.RuntimeRuncV2}},
		{runtimeType: "io.containerd.runhcs.v1", wantErr: []string{"io.containerd.runhcs.v1", "Windows"}},
	} {
		for _, opts := range []map[string]any{nil, {}} {
			name := tc.runtimeType
			if opts == nil {
				name += "/nil"
			} else {
				name += "/empty"
			}
			t.Run(name, func(t *testing.T) {
				got, err := Generate(tc.runtimeType, opts)
				if tc.want == nil {
					checkInvalid(t, err, tc.wantErr...)
					if got != nil {
						t.Errorf("got %#v with the error, want nil", got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if reflect.ValueOf(got).IsNil() {
					t.Fatalf("got a nil %T", got)
				}
				checkSame(t, got, tc.want)
			})
		}
	}
}

// The runc result is the type moby asserts: *options.Options from
// runtime/v2/runc/options.
func TestRuncMobyType(t *testing.T) {
	got, err := Generate(plugin.RuntimeRuncV2, map[string]any{"BinaryName": "crun"})
	if err != nil {
		t.Fatal(err)
	}
	o, ok := got.(*runcoptions.Options)
	if !ok || o.BinaryName != "crun" {
		t.Fatalf("got %#v, want *options.Options with BinaryName crun", got)
	}
}

func TestRuncKeys(t *testing.T) {
	type tc struct {
		key   string
		value any
		want  *runcoptions.Options
	}
	var cases []tc
	for _, s := range []struct {
		key  string
		want *runcoptions.Options
	}{
		{"BinaryName", &runcoptions.Options{BinaryName: "/usr/bin/crun"}},
		{"Root", &runcoptions.Options{Root: "/usr/bin/crun"}},
		{"ShimCgroup", &runcoptions.Options{ShimCgroup: "/usr/bin/crun"}},
		{"CriuImagePath", &runcoptions.Options{CriuImagePath: "/usr/bin/crun"}},
		{"CriuWorkPath", &runcoptions.Options{CriuWorkPath: "/usr/bin/crun"}},
	} {
		cases = append(cases, tc{s.key, "/usr/bin/crun", s.want})
	}
	for _, b := range []struct {
		key  string
		want *runcoptions.Options
	}{
		{"NoPivotRoot", &runcoptions.Options{NoPivotRoot: true}},
		{"NoNewKeyring", &runcoptions.Options{NoNewKeyring: true}},
		{"SystemdCgroup", &runcoptions.Options{SystemdCgroup: true}},
	} {
		cases = append(cases, tc{b.key, true, b.want}, tc{b.key, false, &runcoptions.Options{}})
	}
	for _, n := range []struct {
		key  string
		want *runcoptions.Options
	}{
		{"IoUid", &runcoptions.Options{IoUid: 1000}},
		{"IoGid", &runcoptions.Options{IoGid: 1000}},
	} {
		// JSON gives float64 (or json.Number with UseNumber), TOML gives
		// int64, and a Go caller may use any integer type.
		for _, v := range []any{float64(1000), int64(1000), json.Number("1000"), json.Number("1e3"),
			int(1000), int32(1000), uint16(1000), uint32(1000), uint64(1000), float32(1000)} {
			cases = append(cases, tc{n.key, v, n.want})
		}
	}
	for _, c := range cases {
		t.Run(c.key+"/"+reflect.TypeOf(c.value).String(), func(t *testing.T) {
			got, err := Generate(plugin.RuntimeRuncV2, map[string]any{c.key: c.value})
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, got, c.want)
		})
	}
}

func TestRuncAllKeysTogether(t *testing.T) {
	// A daemon.json excerpt, decoded the way a daemon decodes it.
	doc := `{
		"BinaryName": "/usr/bin/crun", "Root": "/run/crun", "ShimCgroup": "/shim",
		"IoUid": 1000, "IoGid": 1001, "SystemdCgroup": true, "NoPivotRoot": true,
		"NoNewKeyring": true, "CriuImagePath": "/img", "CriuWorkPath": "/work"`
	want := &runcoptions.Options{
		BinaryName: "/usr/bin/crun", Root: "/run/crun", ShimCgroup: "/shim",
		IoUid: 1000, IoGid: 1001, SystemdCgroup: true, NoPivotRoot: true,
		NoNewKeyring: true, CriuImagePath: "/img", CriuWorkPath: "/work",
	}
	// Fields only later containerd patches have, set by reflection so that
	// this compiles at every patch.
	for _, extra := range []struct {
		name string
		json string
		want any
	}{
		{"TaskApiAddress", `"ttrpc+unix:///run/task.sock"`, "ttrpc+unix:///run/task.sock"},
		{"TaskApiVersion", `3`, uint32(3)},
	} {
		if f := reflect.ValueOf(want).Elem().FieldByName(extra.name); f.IsValid() {
			doc += `, "` + extra.name + `": ` + extra.json
			f.Set(reflect.ValueOf(extra.want))
		}
	}
	doc += "}"
	for _, useNumber := range []bool{false, true} {
		dec := json.NewDecoder(strings.NewReader(doc))
		if useNumber {
			dec.UseNumber()
		}
		var opts map[string]any
		if err := dec.Decode(&opts); err != nil {
			t.Fatal(err)
		}
		got, err := Generate(plugin.RuntimeRuncV2, opts)
		if err != nil {
			t.Fatalf("UseNumber=%v: %v", useNumber, err)
		}
		checkSame(t, got, want)
	}
}

// Keys match the way go-toml v1 matches them: exact, lower, upper, or with
// the first letter lowered; nothing else.
func TestKeySpellings(t *testing.T) {
	for _, key := range []string{"SystemdCgroup", "systemdcgroup", "SYSTEMDCGROUP", "systemdCgroup"} {
		got, err := Generate(plugin.RuntimeRuncV2, map[string]any{key: true})
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		checkSame(t, got, &runcoptions.Options{SystemdCgroup: true})
	}
	for _, key := range []string{"SystemdCGroup", "systemd_cgroup", "Systemdcgroup", "systemd-cgroup"} {
		_, err := Generate(plugin.RuntimeRuncV2, map[string]any{key: true})
		checkInvalid(t, err, `unknown option "`+key+`"`, `did you mean "SystemdCgroup"?`)
	}
	_, err := Generate("io.containerd.runsc.v1", map[string]any{"TypeURL": "x"})
	checkInvalid(t, err, `unknown option "TypeURL"`, `did you mean "TypeUrl"?`)

	// Two spellings of one field: go-toml would silently keep one.
	_, err = Generate(plugin.RuntimeRuncV2, map[string]any{"BinaryName": "runc", "binaryName": "crun"})
	checkInvalid(t, err, `"BinaryName"`, `"binaryName"`, "both set BinaryName")
}

func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		runtimeType string
		opts        map[string]any
		want        []string
	}{
		{plugin.RuntimeRuncV2, map[string]any{"Hello": "world"}, []string{`unknown option "Hello"`, plugin.RuntimeRuncV2}},
		{runtimeRuncV1, map[string]any{"SystemdCgroup": true, "Bogus": 1}, []string{`"Bogus"`}},
		{plugin.RuntimeRuncV2, map[string]any{"": true}, []string{`unknown option ""`}},
		{plugin.RuntimeRuncV2, map[string]any{"a\nb": true}, []string{`unknown option "a\nb"`}},
		{plugin.RuntimeRuncV2, map[string]any{"TypeUrl": "x"}, []string{`unknown option "TypeUrl"`}},
		{plugin.RuntimeRuncV2, map[string]any{"CriuPath": "/usr/sbin/criu"}, []string{`option "CriuPath" is not supported`}},
		{plugin.RuntimeRuncV2, map[string]any{"criupath": "/usr/sbin/criu"}, []string{`option "criupath" is not supported`}},
		{"io.containerd.kata.v2", map[string]any{"BinaryName": "x"}, []string{`unknown option "BinaryName"`, "io.containerd.kata.v2"}},
		{"io.containerd.kata.v2", map[string]any{"ConfigPath": "/etc/kata.toml", "hypervisor": "qemu"}, []string{`unknown option "hypervisor"`}},
		// Every bad key is named, not just the first.
		{plugin.RuntimeRuncV2, map[string]any{"Zeta": 1, "Alpha": 2, "IoUid": -1}, []string{`"Zeta"`, `"Alpha"`, `option "IoUid"`}},
	} {
		got, err := Generate(tc.runtimeType, tc.opts)
		checkInvalid(t, err, tc.want...)
		if got != nil {
			t.Errorf("%v: got %#v with the error, want nil", tc.opts, got)
		}
	}
}

func TestManyAndLongKeys(t *testing.T) {
	opts := make(map[string]any)
	for i := 0; i < 25; i++ {
		opts[strings.Repeat("k", i+1)] = i
	}
	_, err := Generate(plugin.RuntimeRuncV2, opts)
	checkInvalid(t, err, `unknown option "k"`, "and 15 more")

	long := strings.Repeat("x", 100000)
	_, err = Generate(plugin.RuntimeRuncV2, map[string]any{long: true})
	checkInvalid(t, err, `unknown option "`+long[:maxKeyInMessage]+`"...`)
	if len(err.Error()) > 1000 {
		t.Errorf("message is %d bytes long", len(err.Error()))
	}
}

func TestWrongValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   string
		value any
		want  string
	}{
		{"bool from string", "SystemdCgroup", "true", "want a boolean, got a string"},
		{"bool from number", "NoPivotRoot", float64(1), "want a boolean, got a number"},
		{"bool from null", "NoNewKeyring", nil, "want a boolean, got null"},
		{"string from number", "BinaryName", int64(42), "want a string, got a number"},
		{"string from json.Number", "Root", json.Number("42"), "want a string, got a number"},
		{"string from bool", "ShimCgroup", true, "want a string, got a boolean"},
		{"string from null", "BinaryName", nil, "want a string, got null"},
		{"string from object", "BinaryName", map[string]any{"a": map[string]any{"b": nil}}, "want a string, got an object"},
		{"string from list", "Root", []any{"a", nil}, "want a string, got a list"},
		{"string from pointer", "Root", new(string), "want a string, got a value"},
		{"uint from string", "IoUid", "1000", "got a string"},
		{"uint from bool", "IoGid", true, "got a boolean"},
		{"uint from null", "IoUid", nil, "got null"},
		{"uint from object", "IoUid", map[string]any{}, "got an object"},
		{"uint from list", "IoUid", []any{float64(1)}, "got a list"},
		{"negative int64", "IoUid", int64(-1), "-1 is negative"},
		{"negative float64", "IoGid", float64(-1), "-1 is negative"},
		{"negative json.Number", "IoUid", json.Number("-1"), "-1 is negative"},
		{"negative fraction", "IoUid", -0.5, "negative"},
		{"fraction", "IoUid", 1.5, "1.5 is not a whole number"},
		{"fraction json.Number", "IoUid", json.Number("1.5"), "1.5 is not a whole number"},
		{"too big int64", "IoUid", int64(math.MaxUint32) + 1, "4294967296 is out of range"},
		{"too big float64", "IoUid", float64(math.MaxUint32) + 1, "4294967296 is out of range"},
		{"too big uint64", "IoGid", uint64(math.MaxUint64), "18446744073709551615 is out of range"},
		{"huge float64", "IoUid", 1e300, "1e+300 is out of range"},
		{"max float64", "IoUid", math.MaxFloat64, "out of range"},
		{"huge json.Number", "IoUid", json.Number("123456789012345678901234567890"), "out of range"},
		{"overflowing json.Number", "IoUid", json.Number("1e999"), "out of range"},
		{"bad json.Number", "IoUid", json.Number("12abc"), `"12abc" is not a number`},
		{"NaN", "IoUid", math.NaN(), "NaN is not a finite number"},
		{"+Inf", "IoUid", math.Inf(1), "+Inf is not a finite number"},
		{"-Inf", "IoUid", math.Inf(-1), "-Inf is not a finite number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Generate(plugin.RuntimeRuncV2, map[string]any{tc.key: tc.value})
			checkInvalid(t, err, `option "`+tc.key+`"`, tc.want)
			if got != nil {
				t.Errorf("got %#v with the error, want nil", got)
			}
		})
	}
}

func TestUintBounds(t *testing.T) {
	for _, v := range []any{int64(0), float64(0), math.Copysign(0, -1), json.Number("0"), json.Number("-0")} {
		got, err := Generate(plugin.RuntimeRuncV2, map[string]any{"IoUid": v})
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		checkSame(t, got, &runcoptions.Options{})
	}
	for _, v := range []any{int64(math.MaxUint32), float64(math.MaxUint32), uint64(math.MaxUint32), json.Number("4294967295")} {
		got, err := Generate(plugin.RuntimeRuncV2, map[string]any{"IoGid": v})
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		checkSame(t, got, &runcoptions.Options{IoGid: math.MaxUint32})
	}
}

// Named types (a caller's own "type myBool bool") convert like their kind.
func TestNamedTypes(t *testing.T) {
	type myBool bool
	type myString string
	type myInt int16
	got, err := Generate(plugin.RuntimeRuncV2, map[string]any{
		"SystemdCgroup": myBool(true), "BinaryName": myString("crun"), "IoUid": myInt(7),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, got, &runcoptions.Options{SystemdCgroup: true, BinaryName: "crun", IoUid: 7})
}

func TestGenericOptions(t *testing.T) {
	const body = "[runsc_config]\n  debug = \"true\"\n"
	for _, tc := range []struct {
		name string
		opts map[string]any
		want *runtimeoptions.Options
	}{
		{"moby's gvisor example", map[string]any{"TypeUrl": "io.containerd.runsc.v1.options", "ConfigPath": "/path/to/runsc.toml"},
			&runtimeoptions.Options{TypeUrl: "io.containerd.runsc.v1.options", ConfigPath: "/path/to/runsc.toml"}},
		{"lower case keys", map[string]any{"typeurl": "t", "configpath": "/c"},
			&runtimeoptions.Options{TypeUrl: "t", ConfigPath: "/c"}},
		{"body as string", map[string]any{"ConfigBody": body}, &runtimeoptions.Options{ConfigBody: []byte(body)}},
		{"body as []byte", map[string]any{"ConfigBody": []byte(body)}, &runtimeoptions.Options{ConfigBody: []byte(body)}},
		{"body as TOML ints", map[string]any{"ConfigBody": []any{int64(104), int64(105)}}, &runtimeoptions.Options{ConfigBody: []byte("hi")}},
		{"body as JSON numbers", map[string]any{"ConfigBody": []any{float64(104), float64(105)}}, &runtimeoptions.Options{ConfigBody: []byte("hi")}},
		{"body as []int", map[string]any{"ConfigBody": []int{0, 255}}, &runtimeoptions.Options{ConfigBody: []byte{0, 255}}},
		{"empty body list", map[string]any{"ConfigBody": []any{}}, &runtimeoptions.Options{ConfigBody: []byte{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Generate("io.containerd.runsc.v1", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, got, tc.want)
		})
	}

	// The result does not share the caller's byte slice.
	in := []byte("abc")
	got, err := Generate("io.containerd.kata.v2", map[string]any{"ConfigBody": in})
	if err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	if b := got.(*runtimeoptions.Options).ConfigBody; !bytes.Equal(b, []byte("abc")) {
		t.Errorf("ConfigBody = %q after the caller changed its slice", b)
	}

	for _, tc := range []struct {
		value any
		want  string
	}{
		{[]any{int64(1), int64(256)}, "element 1: 256 is out of range (want a whole number from 0 to 255)"},
		{[]any{int64(-1)}, "element 0: -1 is negative"},
		{[]any{"a"}, "element 0: want a whole number from 0 to 255, got a string"},
		{[]any{nil}, "element 0: want a whole number from 0 to 255, got null"},
		{[]any{[]any{int64(1)}}, "element 0: want a whole number from 0 to 255, got a list"},
		{float64(1), "want a string or a list of bytes, got a number"},
		{json.Number("1"), "want a string or a list of bytes, got a number"},
		{map[string]any{"a": 1}, "got an object"},
		{nil, "got null"},
	} {
		_, err := Generate("io.containerd.kata.v2", map[string]any{"ConfigBody": tc.value})
		checkInvalid(t, err, `option "ConfigBody"`, tc.want)
	}
}

// The schema is read off the struct: every exported field is settable under
// each of its spellings or refused by name, and nothing else is a key, so a
// field containerd adds at some patch needs no code here.
func TestSchemaCoversStruct(t *testing.T) {
	t.Run("runc", func(t *testing.T) { checkSchema(t, runcSchema, runcRefused) })
	t.Run("generic", func(t *testing.T) { checkSchema(t, genericSchema, nil) })
}

func checkSchema[T any](t *testing.T, s *schema[T], refused map[string]string) {
	rt := reflect.TypeOf((*T)(nil)).Elem()
	var want []string
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		if why, ok := refused[f.Name]; ok {
			if got := s.removed[f.Name]; got != why {
				t.Errorf("refused field %s: reason %q, want %q", f.Name, got, why)
			}
			continue
		}
		want = append(want, f.Name) // a type the schema skips fails here
	}
	var got []string
	for i, f := range s.fields {
		got = append(got, f.name)
		for _, k := range spellings(f.name) {
			if j, ok := s.byKey[k]; !ok || j != i {
				t.Errorf("spelling %q of %s maps to %d (%v), want %d", k, f.name, j, ok, i)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schema of %v has %v, the struct has %v", rt, got, want)
	}
	for k, i := range s.byKey {
		found := false
		for _, sp := range spellings(s.fields[i].name) {
			found = found || sp == k
		}
		if !found {
			t.Errorf("key %q is no spelling of %s", k, s.fields[i].name)
		}
		if _, ok := s.removed[k]; ok {
			t.Errorf("%q is both removed and a field", k)
		}
	}
	// Refused even at the patches whose struct no longer has the field.
	for name := range refused {
		for _, k := range spellings(name) {
			if _, ok := s.removed[k]; !ok {
				t.Errorf("%q (a spelling of %s) is not refused", k, name)
			}
		}
	}
}

// Whatever fields the struct in this build's graph has (TaskApiAddress and
// TaskApiVersion only at later containerd patches), each is settable through
// Generate by its name and each spelling, and sets only itself.
func TestEveryFieldSettable(t *testing.T) {
	for _, tc := range []struct {
		runtimeType string
		msg         any // a pointer to the empty message
		refused     map[string]string
	}{
		{plugin.RuntimeRuncV2, &runcoptions.Options{}, runcRefused},
		{"io.containerd.kata.v2", &runtimeoptions.Options{}, nil},
	} {
		rt := reflect.TypeOf(tc.msg).Elem()
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if !f.IsExported() {
				continue
			}
			var in, stored any
			switch f.Type.Kind() {
			case reflect.Bool:
				in, stored = true, true
			case reflect.String:
				in, stored = "/value/of/"+f.Name, "/value/of/"+f.Name
			case reflect.Uint32:
				in, stored = float64(4000000000), uint32(4000000000) // as JSON gives it
			case reflect.Slice:
				in, stored = "body", []byte("body")
			default:
				t.Errorf("%v.%s: no test value for %v", rt, f.Name, f.Type)
				continue
			}
			want := reflect.New(rt)
			want.Elem().Field(i).Set(reflect.ValueOf(stored))
			for _, key := range spellings(f.Name) {
				got, err := Generate(tc.runtimeType, map[string]any{key: in})
				if why, ok := tc.refused[f.Name]; ok {
					checkInvalid(t, err, `option "`+key+`" is not supported`, why)
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", key, err)
					continue
				}
				checkSame(t, got, want.Interface())
			}
		}
	}
}

type testEnum int32

type testKinds struct {
	sizeCache int32 // unexported: skipped, as protoimpl's fields are

	B      bool
	S      string
	U32    uint32
	U64    uint64
	I32    int32
	I64    int64
	Raw    []byte
	Enum   testEnum               // named: refused
	Opt    *string                // proto3 optional: refused
	List   []string               // refused
	Tagged string                 `protobuf_oneof:"choice"` // refused whatever its type
	F      float64                // refused
	M      map[string]string      // refused
	Ab, AB string                 // share the spelling "ab"
	Iface  interface{ isOneof() } // refused
}

// The reflected schema on a struct with every kind a message might have.
func TestReflectedKinds(t *testing.T) {
	s := newSchema[testKinds](map[string]string{"Gone": "it went away"})
	var names []string
	for _, f := range s.fields {
		names = append(names, f.name)
	}
	if want := []string{"B", "S", "U32", "U64", "I32", "I64", "Raw", "Ab", "AB"}; !reflect.DeepEqual(names, want) {
		t.Errorf("settable fields %v, want %v", names, want)
	}
	const i32 = "(want a whole number from -2147483648 to 2147483647)"
	const i64 = "(want a whole number from -9223372036854775808 to 9223372036854775807)"
	const u64 = "(want a whole number from 0 to 18446744073709551615)"
	for _, tc := range []struct {
		opts map[string]any
		want testKinds // when err is ""
		err  string
	}{
		{opts: map[string]any{"b": true, "s": "x", "u32": int64(7), "raw": "r"},
			want: testKinds{B: true, S: "x", U32: 7, Raw: []byte("r")}},
		{opts: map[string]any{"U64": uint64(math.MaxUint64)}, want: testKinds{U64: math.MaxUint64}},
		{opts: map[string]any{"U64": json.Number("18446744073709551615")}, want: testKinds{U64: math.MaxUint64}},
		{opts: map[string]any{"U64": float64(1 << 63)}, want: testKinds{U64: 1 << 63}},
		{opts: map[string]any{"U64": float64(1 << 64)}, err: "18446744073709552000 is out of range " + u64},
		{opts: map[string]any{"U64": json.Number("18446744073709551616")}, err: "out of range " + u64},
		{opts: map[string]any{"U64": int64(-1)}, err: "-1 is negative " + u64},
		{opts: map[string]any{"I32": float64(-5)}, want: testKinds{I32: -5}},
		{opts: map[string]any{"I32": json.Number("-2147483648")}, want: testKinds{I32: math.MinInt32}},
		{opts: map[string]any{"I32": uint8(200)}, want: testKinds{I32: 200}},
		{opts: map[string]any{"I32": int64(math.MinInt32) - 1}, err: "-2147483649 is out of range " + i32},
		{opts: map[string]any{"I32": float64(math.MaxInt32) + 1}, err: "2147483648 is out of range " + i32},
		{opts: map[string]any{"I32": -1.5}, err: "-1.5 is not a whole number " + i32},
		{opts: map[string]any{"I32": math.Inf(-1)}, err: "-Inf is not a finite number " + i32},
		{opts: map[string]any{"I32": "1"}, err: "want a whole number from -2147483648 to 2147483647, got a string"},
		{opts: map[string]any{"I32": json.Number("x")}, err: `"x" is not a number ` + i32},
		{opts: map[string]any{"I64": int64(math.MinInt64)}, want: testKinds{I64: math.MinInt64}},
		{opts: map[string]any{"I64": float64(math.MinInt64)}, want: testKinds{I64: math.MinInt64}},
		{opts: map[string]any{"I64": float64(1 << 63)}, err: "9223372036854776000 is out of range " + i64},
		{opts: map[string]any{"I64": uint64(1 << 63)}, err: "9223372036854775808 is out of range " + i64},
		{opts: map[string]any{"I64": json.Number("9223372036854775808")}, err: "out of range " + i64},
		// As a float this would round to math.MinInt64.
		{opts: map[string]any{"I64": json.Number("-9223372036854775809")}, err: "out of range " + i64},
		{opts: map[string]any{"Enum": 1}, err: `option "Enum" is not supported: shimopts cannot set a field of type shimopts.testEnum`},
		{opts: map[string]any{"opt": "x"}, err: `option "opt" is not supported: shimopts cannot set a field of type *string`},
		{opts: map[string]any{"List": []any{"x"}}, err: `option "List" is not supported`},
		{opts: map[string]any{"tagged": "x"}, err: `option "tagged" is not supported`},
		{opts: map[string]any{"F": 1.5}, err: `option "F" is not supported: shimopts cannot set a field of type float64`},
		{opts: map[string]any{"M": map[string]any{}}, err: `option "M" is not supported`},
		{opts: map[string]any{"Iface": "x"}, err: `option "Iface" is not supported`},
		{opts: map[string]any{"GONE": 1}, err: `option "GONE" is not supported: it went away`},
		{opts: map[string]any{"Ab": "1", "aB": "2"}, want: testKinds{Ab: "1", AB: "2"}},
		{opts: map[string]any{"AB": "2"}, want: testKinds{AB: "2"}},
		{opts: map[string]any{"ab": "x"}, err: `option "ab" is not supported: it could mean any of Ab, AB; use the exact field name`},
	} {
		got, err := decode("test", tc.opts, s)
		if tc.err != "" {
			checkInvalid(t, err, tc.err)
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.opts, err)
			continue
		}
		if got.sizeCache != 0 || !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%v: got %+v, want %+v", tc.opts, *got, tc.want)
		}
	}
}

// Generate shares only read-only tables between calls.
func TestConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				if _, err := Generate(plugin.RuntimeRuncV2, map[string]any{"IoUid": j, "Root": "/r"}); err != nil {
					t.Error(err)
					return
				}
				if _, err := Generate(plugin.RuntimeRuncV2, map[string]any{"nope": j}); err == nil {
					t.Error("unknown key accepted")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// The result is what containerd.WithRuntime takes: it marshals into an Any
// with the type URL the shim expects, and back to the same values.
func TestWithRuntime(t *testing.T) {
	for _, tc := range []struct {
		runtimeType string
		opts        map[string]any
		typeURL     string
		decode      func([]byte) (any, error)
	}{
		{plugin.RuntimeRuncV2, map[string]any{"BinaryName": "crun", "SystemdCgroup": true, "IoUid": float64(1000)},
			"containerd.runc.v1.Options", func(b []byte) (any, error) {
				var o runcoptions.Options
				return &o, cproto.Unmarshal(b, &o)
			}},
		{"io.containerd.runsc.v1", map[string]any{"TypeUrl": "io.containerd.runsc.v1.options", "ConfigBody": "x = 1"},
			"runtimeoptions.v1.Options", func(b []byte) (any, error) {
				var o runtimeoptions.Options
				return &o, cproto.Unmarshal(b, &o)
			}},
	} {
		got, err := Generate(tc.runtimeType, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		var c containers.Container
		if err := containerd.WithRuntime(tc.runtimeType, got)(context.Background(), nil, &c); err != nil {
			t.Fatalf("WithRuntime(%q): %v", tc.runtimeType, err)
		}
		if c.Runtime.Name != tc.runtimeType || c.Runtime.Options == nil {
			t.Fatalf("runtime info = %+v", c.Runtime)
		}
		if u := c.Runtime.Options.GetTypeUrl(); u != tc.typeURL {
			t.Errorf("type URL = %q, want %q", u, tc.typeURL)
		}
		back, err := tc.decode(c.Runtime.Options.GetValue())
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, back, got)
	}
}

// tomlNumbers turns every whole float64 that fits an int64 into an int64, the
// way the same document would come out of a TOML decoder.
func tomlNumbers(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
			return int64(x)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = tomlNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = tomlNumbers(e)
		}
	}
	return v
}

func FuzzGenerate(f *testing.F) {
	for _, seed := range []struct {
		runtimeType string
		doc         string
	}{
		{plugin.RuntimeRuncV2, `{"BinaryName":"crun","SystemdCgroup":true,"IoUid":1000,"IoGid":1000}`},
		{runtimeRuncV1, `{"root":"/run/runc","NOPIVOTROOT":true,"noNewKeyring":false}`},
		{plugin.RuntimeRuncV2, `{"IoUid":-1}`},
		{plugin.RuntimeRuncV2, `{"IoUid":4294967296}`},
		{plugin.RuntimeRuncV2, `{"IoUid":1e400}`},
		{plugin.RuntimeRuncV2, `{"IoUid":1.5,"IoGid":"7"}`},
		{plugin.RuntimeRuncV2, `{"BinaryName":null,"Root":{"a":[1,null,{"b":{}}]},"ShimCgroup":[null]}`},
		{plugin.RuntimeRuncV2, `{"Bogus":1,"CriuPath":"/criu","binary_name":"x"}`},
		{plugin.RuntimeRuncV2, `{"BinaryName":"a","binaryName":"b"}`},
		{"io.containerd.runsc.v1", `{"TypeUrl":"io.containerd.runsc.v1.options","ConfigPath":"/etc/runsc.toml"}`},
		{"io.containerd.kata.v2", `{"ConfigBody":[104,105,256,-1,null]}`},
		{"io.containerd.kata.v2", `{"ConfigBody":"[a]\nb = 1\n"}`},
		{runtimeLinuxV1, `{}`},
		{"io.containerd.runhcs.v1", `{"Debug":true}`},
		{"", `null`},
		{plugin.RuntimeRuncV2, `not json`},
	} {
		for _, useNumber := range []bool{false, true} {
			for _, toml := range []bool{false, true} {
				f.Add(seed.runtimeType, seed.doc, useNumber, toml)
			}
		}
	}
	f.Fuzz(func(t *testing.T, runtimeType, doc string, useNumber, toml bool) {
		var opts map[string]any
		dec := json.NewDecoder(strings.NewReader(doc))
		if useNumber {
			dec.UseNumber()
		}
		if err := dec.Decode(&opts); err != nil {
			// Not a JSON object: still exercise the key and value paths.
			opts = map[string]any{doc: doc, "IoUid": doc, "ConfigBody": []any{doc}}
		}
		if toml && !useNumber {
			tomlNumbers(opts)
		}
		got, err := Generate(runtimeType, opts)
		if err != nil {
			if got != nil {
				t.Fatalf("got %#v with error %v", got, err)
			}
			if !errors.Is(err, cerrdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
			if _, ok := err.(mobyInvalidParameter); !ok {
				t.Fatalf("error %v has no InvalidParameter marker", err)
			}
			return
		}
		switch runtimeType {
		case runtimeRuncV1, plugin.RuntimeRuncV2:
			if o, ok := got.(*runcoptions.Options); !ok || o == nil {
				t.Fatalf("got %#v for %q", got, runtimeType)
			}
		default:
			if o, ok := got.(*runtimeoptions.Options); !ok || o == nil {
				t.Fatalf("got %#v for %q", got, runtimeType)
			}
		}
	})
}
