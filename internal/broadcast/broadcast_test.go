package broadcast

import (
	"sync"
	"testing"
)

func TestBroadcastWakesEveryWaiter(t *testing.T) {
	var n Notifier
	var wg sync.WaitGroup
	ready := make(chan struct{}, 8)
	for range 8 {
		wg.Add(1)
		ch := n.Wait()
		go func() {
			defer wg.Done()
			ready <- struct{}{}
			<-ch
		}()
	}
	for range 8 {
		<-ready
	}
	n.Broadcast()
	wg.Wait()
	select {
	case <-n.Wait():
		t.Fatal("a new waiter must wait for the next broadcast")
	default:
	}
	n.Broadcast() // with a waiter's channel taken above: closes it
	n.Broadcast() // with none: nothing to do, must not panic
}
