// Package queue runs work serially per ID and concurrently across IDs.
//
// It exists so that events about one container (or exec, or task) are
// handled strictly in the order they arrived while a slow or stuck handler
// for one ID never holds up any other ID. It is the counterpart of moby's
// libcontainerd/queue, without that queue's cost of one parked goroutine
// (a few KiB of stack) for every pending event.
//
// Design, in brief:
//   - Pending work lives in a mutex-protected map from ID to a FIFO of funcs
//     (a reused slice). An ID with work and no worker sits on a FIFO ready
//     list.
//   - A pool of worker goroutines, normally at most GOMAXPROCS, takes an ID,
//     swaps out its whole backlog in one lock hold and runs it unlocked; an
//     ID that gained more work meanwhile goes to the back of the ready list,
//     so busy IDs take turns.
//   - Idle workers park on a channel of their own and are handed work
//     directly by Append; they exit after a short linger, or at once when
//     Wait is called, so an unused Queue holds no goroutines.
//   - Because handlers may block, one watchdog timer per Queue adds workers
//     when IDs are waiting and no worker has finished anything for a few
//     milliseconds; those extra workers retire the same way.
//   - Panics in handlers are recovered and logged, and a handler that calls
//     runtime.Goexit only costs its own goroutine: the worker carries on in
//     a new one.
package queue
