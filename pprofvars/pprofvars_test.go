package pprofvars_test

import (
	"bytes"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/pprofvars"
)

var (
	tenant = contextvars.NewVar[string]("tenant")
	route  = contextvars.NewVar[string]("route")
)

// labelsOfBlocked returns the labels line of the goroutine profile entry
// whose stack holds marker, with the goroutine parked in it.
func labelsOfBlocked(t *testing.T, marker string) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&buf, 1))
	for _, entry := range strings.Split(buf.String(), "\n\n") {
		if !strings.Contains(entry, marker) {
			continue
		}
		for _, line := range strings.Split(entry, "\n") {
			if strings.HasPrefix(line, "# labels: ") {
				return strings.TrimPrefix(line, "# labels: ")
			}
		}
		return ""
	}
	t.Fatalf("no goroutine parked in %s", marker)
	return ""
}

// parkedWithLabels parks the calling goroutine until release is closed;
// its name marks it in goroutine profiles.
func parkedWithLabels(ready chan<- struct{}, release <-chan struct{}) {
	ready <- struct{}{}
	<-release
}

// parkedAfter parks a goroutine that has left its Runs.
func parkedAfter(ready chan<- struct{}, release <-chan struct{}) {
	ready <- struct{}{}
	<-release
}

func TestLabels(t *testing.T) {
	remove := contextvars.OnSwitch(pprofvars.Labels(tenant, route))
	defer remove()
	c := contextvars.New()
	require.NoError(t, c.Run(func() error {
		tenant.Set("acme")
		return nil
	}))
	inRun, afterRun := make(chan struct{}), make(chan struct{})
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(func() error {
			nested := c.Copy()
			return nested.Run(func() error {
				parkedWithLabels(inRun, release)
				return nil
			})
		})
		parkedAfter(afterRun, release)
	}()
	<-inRun
	assert.Equal(t, `{"tenant":"acme"}`, labelsOfBlocked(t, "parkedWithLabels"), "route has no value: no label")
	release <- struct{}{}
	<-afterRun
	assert.Equal(t, "", labelsOfBlocked(t, "parkedAfter"), "leaving the outermost Run clears the labels")
	close(release)
	<-done

	remove()
	ready := make(chan struct{})
	release = make(chan struct{})
	done = make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(func() error { parkedWithLabels(ready, release); return nil })
	}()
	<-ready
	assert.Equal(t, "", labelsOfBlocked(t, "parkedWithLabels"), "no hook, no labels")
	close(release)
	<-done
}

// parkedAfterDrop parks a goroutine that has dropped its implicit context.
func parkedAfterDrop(ready chan<- struct{}, release <-chan struct{}) {
	ready <- struct{}{}
	<-release
}

// TestLabels_dropImplicit: a keep-alive goroutine whose middleware set a var
// before the request's Run, and dropped it after (as httpvars.Handler does),
// does not keep the request's labels while it waits for the next request.
func TestLabels_dropImplicit(t *testing.T) {
	remove := contextvars.OnSwitch(pprofvars.Labels(tenant, route))
	defer remove()
	for _, inside := range []bool{false, true} {
		ready, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			tenant.Set("acme") // the middleware, outside the request's Run
			_ = contextvars.New().Run(func() error {
				route.Set("/orders")
				if inside {
					contextvars.DropImplicit()
				}
				return nil
			})
			if !inside {
				contextvars.DropImplicit()
			}
			parkedAfterDrop(ready, release)
		}()
		<-ready
		assert.Equal(t, "", labelsOfBlocked(t, "parkedAfterDrop"), "DropImplicit inside Run: %v", inside)
		close(release)
		<-done
	}
}

func TestLabels_badInput(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: pprofvars.Labels needs at least one var", func() { pprofvars.Labels() })
	var nilVar *contextvars.Var[int]
	assert.PanicsWithError(t, "contextvars: pprofvars.Labels given a nil var", func() { pprofvars.Labels(tenant, nilVar) })
}

// Example labels CPU profiles by tenant: each request runs in a Run, and
// its goroutine carries the label while it does.
func Example() {
	remove := contextvars.OnSwitch(pprofvars.Labels(tenant))
	defer remove()

	req := contextvars.New()
	_ = req.Run(func() error { tenant.Set("acme"); return nil })
	_ = req.Run(func() error {
		// CPU samples taken here carry tenant=acme.
		return nil
	})
	// Output:
}

// parkedAfterOuterRun parks a goroutine that has left its outermost Run.
func parkedAfterOuterRun(ready chan<- struct{}, release <-chan struct{}) {
	ready <- struct{}{}
	<-release
}

// TestLabels_registeredInsideRun: "Leaving a goroutine's
// outermost Run clears them." A goroutine inside a long Run (a streaming
// request) when the hook is registered, that then enters a nested Run
// (RunWith, a Wrap'd func called inline), must not keep the request's labels after
// the request's Run returns, unless the outer Run calls on leaving the
// hooks registered by then (a first version of the session-11 hook change
// called only those loaded on entering: none).
func TestLabels_registeredInsideRun(t *testing.T) {
	entered, registered := make(chan struct{}), make(chan struct{})
	ready, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_ = contextvars.New().Run(func() error {
			tenant.Set("acme")
			close(entered)
			<-registered
			return contextvars.RunWith(func() error { return nil }, contextvars.Bind(route, "/orders"))
		})
		parkedAfterOuterRun(ready, release) // a keep-alive goroutine, idle
	}()
	<-entered
	remove := contextvars.OnSwitch(pprofvars.Labels(tenant, route))
	defer remove()
	close(registered)
	<-ready
	assert.Equal(t, "", labelsOfBlocked(t, "parkedAfterOuterRun"), "leaving the outermost Run clears the labels")
	close(release)
	<-done
}

// parkedAfterRemovedRun parks a goroutine that has left its outermost Run.
func parkedAfterRemovedRun(ready chan<- struct{}, release <-chan struct{}) {
	ready <- struct{}{}
	<-release
}

// TestLabels_removedInsideRun is TestLabels_registeredInsideRun the
// other way round: the hook is removed (a test's deferred remove, a
// profiler turned off) while a goroutine is inside a Run it labelled on
// entering. The Run calls on leaving the hooks it called on entering, so
// that the idle keep-alive goroutine does not keep the last request's
// tenant for good ("Leaving a goroutine's outermost Run clears them",
// Labels' doc). (Session-11 third review.)
func TestLabels_removedInsideRun(t *testing.T) {
	remove := contextvars.OnSwitch(pprofvars.Labels(tenant))
	entered, removed := make(chan struct{}), make(chan struct{})
	ready, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		c := contextvars.New()
		_ = c.Run(func() error {
			// The entry hook saw an empty context; set and switch once
			// more so that the labels carry the tenant.
			tenant.Set("acme")
			return contextvars.RunWith(func() error {
				close(entered)
				<-removed
				return nil
			})
		})
		parkedAfterRemovedRun(ready, release) // a keep-alive goroutine, idle
	}()
	<-entered
	remove()
	close(removed)
	<-ready
	assert.Equal(t, "", labelsOfBlocked(t, "parkedAfterRemovedRun"), "leaving the outermost Run clears the labels")
	close(release)
	<-done
}
