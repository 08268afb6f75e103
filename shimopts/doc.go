// Package shimopts turns the "options" of a runtime in a daemon's
// configuration into the runtime options value that the containerd client
// sends with a new container (containerd.WithRuntime), the way moby's
// libcontainerd/shimopts does.
//
// A daemon reads a runtime's options as a generic map (from daemon.json or a
// TOML file); containerd wants a typed protobuf message. Generate picks the
// message type from the runtime type, fills it field by field, and rejects
// anything it cannot place — unknown keys, wrong value types, out-of-range
// numbers — with an InvalidParameter error that names the key, instead of
// silently ignoring it.
//
// Runtime types and the options they get:
//
//   - io.containerd.runc.v1, io.containerd.runc.v2: the runc shim's
//     *options.Options from github.com/containerd/containerd/runtime/v2/runc/options,
//     the type moby asserts (at later containerd patches an alias of
//     api/types/runc/options.Options). CriuPath, which runc ignores, is
//     refused.
//   - io.containerd.runtime.v1.linux (containerd's legacy v1 runtime) and the
//     Windows-only io.containerd.runhcs.* runtimes: rejected.
//   - any other runtime type (io.containerd.runsc.v1, io.containerd.kata.v2, a
//     shim path, ...): the generic *runtimeoptions_v1.Options from
//     github.com/containerd/containerd/pkg/runtimeoptions/v1 (TypeUrl,
//     ConfigPath, ConfigBody), which is what containerd's CRI plugin and moby
//     use for runtimes they do not know.
//
// The keys are the exported fields of the message, read by reflection, so
// they follow the containerd version in the consumer's module graph (for
// example, TaskApiAddress and TaskApiVersion exist only at later v1.7
// patches).
//
// Keys are matched the way go-toml v1 (which moby and containerd use for
// this) matches struct fields: the Go field name ("BinaryName"), all lower
// case ("binaryname"), all upper case ("BINARYNAME"), or with the first letter
// lowered ("binaryName").
package shimopts
