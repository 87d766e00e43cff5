package virtio

import (
	"fmt"
	"log/slog"
	"sync/atomic"
)

// Handler serves one descriptor chain and returns how many bytes it wrote
// into the chain's writable buffers. An error means the chain broke the
// device's protocol in a way no request status can report; the device is
// then failed (DEVICE_NEEDS_RESET).
type Handler func(c *Chain) (uint32, error)

// Worker serves one queue on its own goroutine: it sleeps on the queue's
// kick eventfd through Go's poller, drains the available ring, and
// signals used buffers. Devices whose queues are driven by notifications
// alone (block, net TX) need nothing else.
type Worker struct {
	stop atomic.Bool
	kick *EventFD
	done chan struct{}
}

// StartWorker serves queue index of act with handle until Stop.
func StartWorker(act Activation, index int, handle Handler) (*Worker, error) {
	if index < 0 || index >= len(act.Queues) || index >= len(act.Kicks) || act.Queues[index] == nil {
		return nil, fmt.Errorf("%w: queue %d was not enabled by the driver", ErrDevice, index)
	}
	w := &Worker{kick: act.Kicks[index], done: make(chan struct{})}
	go w.run(act, act.Queues[index], handle)
	return w, nil
}

// Stop ends the worker and returns once it no longer touches guest memory.
func (w *Worker) Stop() {
	w.stop.Store(true)
	if err := w.kick.Signal(); err != nil {
		// Only a closed eventfd fails, and closing it ends Wait too.
		slog.Debug("virtio worker stop: cannot wake the worker", "err", err)
	}
	<-w.done
}

func (w *Worker) run(act Activation, q *Queue, handle Handler) {
	defer close(w.done)
	var c Chain
	for !w.stop.Load() {
		if err := w.drain(act, q, &c, handle); err != nil {
			act.Fail(err)
			return
		}
		if w.stop.Load() {
			return
		}
		if _, err := w.kick.Wait(); err != nil {
			return // the transport closed the eventfd
		}
	}
}

// drain serves chains until the ring is empty and notifications are
// re-enabled, or until Stop.
func (w *Worker) drain(act Activation, q *Queue, c *Chain, handle Handler) error {
	for !w.stop.Load() {
		ok, err := q.Pop(c)
		if err != nil {
			return err
		}
		if !ok {
			more, err := q.EnableNotification()
			if err != nil || !more {
				return err
			}
			continue
		}
		n, err := handle(c)
		if err != nil {
			return fmt.Errorf("queue chain %d: %w", c.Head, err)
		}
		if err := q.Push(c.Head, n); err != nil {
			return err
		}
		// Offer an interrupt for every completion and let the driver's
		// suppression decide (§2.7.7): Linux asks for one only while it
		// waits, so a busy driver is not interrupted and an idle one is
		// not kept waiting for the rest of a burst.
		if err := act.SignalUsed(q); err != nil {
			return err
		}
	}
	return nil
}
