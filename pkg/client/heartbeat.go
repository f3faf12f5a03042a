package client

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// heartbeatTimeout bounds one heartbeat patch.
const heartbeatTimeout = 10 * time.Second

// minHeartbeatInterval keeps a very short idle timeout from turning into a patch storm.
const minHeartbeatInterval = 100 * time.Millisecond

// heartbeat keeps the session's last-activity annotation fresh while the caller is active:
// a command or transfer runs (begin/end), or Touch was called. It patches at most once per
// interval (a third of the idle timeout), and never while the caller is idle, so an agent
// that stops using the sandbox lets the idle timeout end it.
type heartbeat struct {
	interval time.Duration
	patch    func(ctx context.Context, at time.Time) error

	mu       sync.Mutex
	active   int       // operations running
	pending  bool      // activity since the last patch
	activity time.Time // when the caller was last active (Touch, or an operation's end)
	last     time.Time // when the last patch was sent

	kick chan struct{}
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func startHeartbeat(interval time.Duration, patch func(context.Context, time.Time) error) *heartbeat {
	h := &heartbeat{interval: max(interval, minHeartbeatInterval), patch: patch,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	h.wg.Add(1)
	go h.loop()
	return h
}

// begin marks an operation started; end marks it finished (the idle time counts from then).
func (h *heartbeat) begin() { h.update(1) }
func (h *heartbeat) end()   { h.update(-1) }
func (h *heartbeat) touch() { h.update(0) }

func (h *heartbeat) update(delta int) {
	h.mu.Lock()
	h.active += delta
	h.pending = true
	h.activity = time.Now()
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// stop ends the heartbeat; no patch is sent after it returns.
func (h *heartbeat) stop() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
}

func (h *heartbeat) loop() {
	defer h.wg.Done()
	var timer *time.Timer
	for {
		h.mu.Lock()
		due := h.active > 0 || h.pending
		wait := time.Until(h.last.Add(h.interval))
		if due && wait <= 0 {
			h.pending = false
			h.last = time.Now()
			// While an operation runs the caller is active now; else since its last
			// activity, so the idle timeout counts from there, not from this patch.
			at := h.last
			if h.active == 0 {
				at = h.activity
			}
			h.mu.Unlock()
			h.send(at)
			continue
		}
		h.mu.Unlock()
		var fire <-chan time.Time
		if due {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-h.done:
			if timer != nil {
				timer.Stop()
			}
			return
		case <-h.kick:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
			timer = nil
		}
	}
}

// send patches the annotation. A failed patch is not retried before the next interval:
// the next activity, or the running operation, sends another.
func (h *heartbeat) send(at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), heartbeatTimeout)
	defer cancel()
	go func() {
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = h.patch(ctx, at)
}

func rawMergePatch(data string) crclient.Patch {
	return crclient.RawPatch(types.MergePatchType, []byte(data))
}

func keyOf(namespace, name string) crclient.ObjectKey {
	return crclient.ObjectKey{Namespace: namespace, Name: name}
}
