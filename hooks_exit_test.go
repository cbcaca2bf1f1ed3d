package contextvars

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestOnSwitch_hookEndsGoroutine: a switch hook that calls runtime.Goexit
// (t.FailNow or require.* in a test's hook) or panics (recovered upstream,
// by net/http's per-request recover say), on entering or on leaving, leaves
// the context free to enter again and the goroutine's state out of the
// registry: Run undoes its switch on every way out, a hook's included.
// (Found by the session-11 break review.)
func TestOnSwitch_hookEndsGoroutine(t *testing.T) {
	tests := []struct {
		name    string
		onEnter bool
		end     func()
	}{
		{"Goexit on entering", true, runtime.Goexit},
		{"Goexit on leaving", false, runtime.Goexit},
		{"panic on entering", true, func() { panic("hook") }},
		{"panic on leaving", false, func() { panic("hook") }},
	}
	for _, tt := range tests {
		for _, how := range []string{"Run", "Call", "GoIn"} {
			if how == "GoIn" && tt.name[:5] == "panic" {
				continue // an unrecovered panic on GoIn's goroutine ends the process
			}
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				before := registryLive()
				c := New()
				fired := make(chan struct{}, 1)
				remove := OnSwitch(func(from, to *Context) {
					if (tt.onEnter && to == c) || (!tt.onEnter && from == c) {
						fired <- struct{}{}
						tt.end()
					}
				})
				switch how {
				case "GoIn":
					assert.NoError(t, GoIn(c, func() {}))
					<-fired
				default:
					done := make(chan struct{})
					go func() {
						defer close(done)
						defer func() { _ = recover() }()
						if how == "Run" {
							_ = c.Run(func() error { return nil })
						} else {
							_, _ = Call(c, func() (int, error) { return 1, nil })
						}
					}()
					<-fired
					<-done
				}
				remove()
				// GoIn's goroutine may still be on its way out (a
				// bound, so that a c left entered fails, not hangs).
				for end := time.Now().Add(10 * time.Second); how == "GoIn" && time.Now().Before(end) &&
					c.Run(func() error { return nil }) != nil; {
					runtime.Gosched()
				}
				assert.NoError(t, c.Run(func() error { return nil }), "c is free to enter again")
				assert.Equal(t, before, registryLive(), "no goroutine state left behind")
			})
		}
	}
}
