package heapgoal

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 96 * mb, MaxPercent},
		{10 * mb, 96 * mb, MaxPercent}, // 960% capped
		{24 * mb, 96 * mb, 400},
		{48 * mb, 96 * mb, 200},
		{64 * mb, 96 * mb, 150},
		{96 * mb, 96 * mb, 100},
		{500 * mb, 96 * mb, MinPercent}, // 19% raised
	} {
		if got := Percent(c.live, c.headroom); got != c.want {
			t.Errorf("Percent(%d MB, %d MB) = %d, want %d", c.live/mb, c.headroom/mb, got, c.want)
		}
	}
}

// TestRunPacesAndRestores: with a small live heap Run raises the
// percent to MaxPercent, with one above the headroom it lowers it to
// MinPercent, and it puts the original back when its context ends.
func TestRunPacesAndRestores(t *testing.T) {
	orig := Current()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, 64<<20, 5*time.Millisecond) }()
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for Current() != want {
			if time.Now().After(deadline) {
				t.Fatalf("GC percent %d, want %d", Current(), want)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(MaxPercent)
	big := make([][]byte, 0, 160)
	for range 160 { // 160 MB live, over the 64 MB headroom
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		big = append(big, b)
	}
	waitFor(MinPercent)
	runtime.KeepAlive(big)
	big = nil
	waitFor(MaxPercent)
	cancel()
	<-done
	if got := Current(); got != orig {
		t.Errorf("GC percent after Run: %d, want the original %d", got, orig)
	}
}
