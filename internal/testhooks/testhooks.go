// Package testhooks lets the project's own tests look inside a Client
// without widening the public API a daemon sees. The root package fills the
// hooks in at init; nothing outside this module can import them.
package testhooks

// TrackedProcesses returns how many processes the client's exit ledger
// still holds (alive, or with an exit not yet delivered or not yet known to
// be deleted). After every process of the client is deleted and its exit
// delivered it is 0. client is the value NewClient returned.
var TrackedProcesses func(client any) int
