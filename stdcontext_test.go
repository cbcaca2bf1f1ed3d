package contextvars_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

type otherKey struct{}

func TestWithContext_FromContext(t *testing.T) {
	c := contextvars.New()
	base, cancel := context.WithTimeout(context.WithValue(context.Background(), otherKey{}, "kept"), time.Hour)
	defer cancel()
	cases := []struct {
		name   string
		ctx    context.Context
		want   *contextvars.Context
		wantOK bool
	}{
		{"carries c", contextvars.WithContext(base, c), c, true},
		{"inner wins", contextvars.WithContext(contextvars.WithContext(base, contextvars.New()), c), c, true},
		{"carries none", base, nil, false},
		{"nil context.Context", nil, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := contextvars.FromContext(tc.ctx)
			assert.Equal(t, tc.wantOK, ok, "FromContext ok")
			assert.Same(t, tc.want, got, "FromContext")
		})
	}

	ctx := contextvars.WithContext(base, c)
	assert.Equal(t, "kept", ctx.Value(otherKey{}), "other values are untouched")
	d1, _ := base.Deadline()
	d2, ok := ctx.Deadline()
	assert.True(t, ok)
	assert.Equal(t, d1, d2, "the deadline is untouched")
	cancel()
	<-ctx.Done()
	assert.ErrorIs(t, ctx.Err(), context.Canceled, "cancellation reaches the derived context")

	assert.PanicsWithError(t, "contextvars: nil context.Context", func() {
		contextvars.WithContext(nil, c) //nolint:staticcheck // the nil is the point
	})
	// A nil *Context is refused at the call, not later in RunFrom.
	assert.PanicsWithError(t, "contextvars: nil *Context", func() {
		contextvars.WithContext(base, nil)
	})
}

// TestLookupContext checks the rule every integration reads vars by: code
// sees the context it runs in; the *Context a context.Context carries is
// used by code that runs in none, or only in an implicit context that
// lacks the var.
func TestLookupContext(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: nil *Var", func() { (*contextvars.Var[int])(nil).InContext(context.Background()) })
	user := lookupUser
	alice := contextvars.New()
	require.NoError(t, alice.Run(func() error { user.Set("alice"); return nil }))
	aliceCtx := contextvars.WithContext(context.Background(), alice)

	cases := []struct {
		name   string
		run    func(fn func()) // how the lookup runs: on which goroutine, in which context
		ctx    context.Context
		key    contextvars.Key
		want   any
		wantOK bool
	}{
		{"in a Run, ctx of another request: the Run's", inRun("bob"), aliceCtx, user, "bob", true},
		{"in a Run that lacks the var: not the ctx's", inRun(""), aliceCtx, user, nil, false},
		{"in an implicit context: its own", withImplicit("carol"), aliceCtx, user, "carol", true},
		{"in an implicit context that lacks the var: the ctx's", withImplicitTask, aliceCtx, user, "alice", true},
		{"in an implicit context that lacks the var, ctx carries none", withImplicitTask, context.Background(), user, nil, false},
		{"in none: the ctx's", inPlainGoroutine, aliceCtx, user, "alice", true},
		{"in none, ctx carries none", inPlainGoroutine, context.Background(), user, nil, false},
		{"in none, nil ctx", inPlainGoroutine, nil, user, nil, false},
		{"nil key", inPlainGoroutine, aliceCtx, nil, nil, false},
		{"nil *Var", inRun("bob"), aliceCtx, (*contextvars.Var[string])(nil), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got any
			var ok bool
			tc.run(func() { got, ok = contextvars.LookupContext(tc.ctx, tc.key) })
			assert.Equal(t, tc.wantOK, ok, "LookupContext ok")
			assert.Equal(t, tc.want, got, "LookupContext")
			if tc.key != contextvars.Key(user) {
				return
			}
			// Var.InContext is the same rule, typed.
			var typed string
			tc.run(func() { typed, ok = user.InContext(tc.ctx) })
			assert.Equal(t, tc.wantOK, ok, "InContext ok")
			if tc.wantOK {
				assert.Equal(t, tc.want, typed, "InContext")
			} else {
				assert.Empty(t, typed, "InContext: the zero value")
			}
		})
	}
}

// lookupUser is the var TestLookupContext looks up, and its runners set.
var lookupUser = contextvars.NewVar[string]("user")

// setUser sets lookupUser to user, unless user is "".
func setUser(user string) {
	if user != "" {
		lookupUser.Set(user)
	}
}

// inRun returns a runner that calls fn on a new goroutine inside a new
// context, where lookupUser is set to user (left unset if user is "").
func inRun(user string) func(func()) {
	return func(fn func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = contextvars.New().Run(func() error {
				setUser(user)
				fn()
				return nil
			})
		}()
		<-done
	}
}

// withImplicit returns a runner that calls fn on a new goroutine that has
// set lookupUser outside any Run: an implicit context.
func withImplicit(user string) func(func()) {
	return func(fn func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			setUser(user)
			fn()
		}()
		<-done
	}
}

// withImplicitTask calls fn on a new goroutine that has set a var other
// than lookupUser outside any Run (a handler behind http.TimeoutHandler
// that sets a var of its own).
func withImplicitTask(fn func()) {
	task := contextvars.NewVar[string]("task")
	done := make(chan struct{})
	go func() { defer close(done); task.Set("render"); fn() }()
	<-done
}

// inPlainGoroutine calls fn on a new goroutine that runs in no context.
func inPlainGoroutine(fn func()) {
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	<-done
}

// TestRunFrom: a goroutine that gets only a context.Context runs in a copy
// of the request's vars, in one call; what it sets stays in the copy.
func TestRunFrom(t *testing.T) {
	user := contextvars.NewVar[string]("user")
	req := contextvars.New()
	var ctx context.Context
	require.NoError(t, req.Run(func() error {
		user.Set("alice")
		ctx = contextvars.WithContext(context.Background(), req)
		done := make(chan error)
		go func() { // a library callback: it has only ctx
			done <- contextvars.RunFrom(ctx, func() error {
				got, _ := user.Get()
				assert.Equal(t, "alice", got, "the callback sees the request's vars")
				user.Set("mallory")
				return errors.New("from fn")
			})
		}()
		assert.EqualError(t, <-done, "from fn", "RunFrom returns fn's error")
		got, _ := user.Get()
		assert.Equal(t, "alice", got, "what the callback set stays in its copy")

		// Running req itself elsewhere is refused while the request is in it.
		go func() { done <- req.Run(func() error { return nil }) }()
		assert.ErrorIs(t, <-done, contextvars.ErrAlreadyEntered, "why RunFrom copies")
		return nil
	}))

	assert.ErrorIs(t, contextvars.RunFrom(context.Background(), func() error { return nil }), contextvars.ErrNoContext)
	assert.EqualError(t, contextvars.RunFrom(nil, func() error { return nil }), "contextvars: nil context.Context") //nolint:staticcheck
	assert.EqualError(t, contextvars.RunFrom(ctx, nil), "contextvars: nil func")
}

// This example demonstrates the rule LookupContext applies: code that runs
// in a context sees that context, whatever its context.Context carries;
// code that runs in none sees the Context its context.Context carries.
func ExampleLookupContext() {
	user := contextvars.NewVar[string]("user")
	req := contextvars.New()
	_ = req.Run(func() error { user.Set("alice"); return nil })
	ctx := contextvars.WithContext(context.Background(), req)

	done := make(chan struct{})
	go func() { // a plain goroutine: it runs in no context
		defer close(done)
		v, _ := contextvars.LookupContext(ctx, user)
		fmt.Println("plain goroutine:", v)
	}()
	<-done

	task := contextvars.New()
	_ = task.Run(func() error {
		user.Set("bob")
		v, _ := contextvars.LookupContext(ctx, user)
		fmt.Println("inside a Run:", v)
		return nil
	})
	// Output:
	// plain goroutine: alice
	// inside a Run: bob
}

// This example demonstrates DropImplicit on a goroutine that serves one
// request after another: what it set outside any Run for one request is
// gone before the next.
func ExampleDropImplicit() {
	requestID := contextvars.NewVar[string]("request_id")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, id := range []string{"r-1", ""} {
			if id != "" {
				requestID.Set(id)
			}
			got, ok := requestID.Get()
			fmt.Printf("request %q sees %q %v\n", id, got, ok)
			contextvars.DropImplicit() // the request is over
		}
	}()
	<-done
	// Output:
	// request "r-1" sees "r-1" true
	// request "" sees "" false
}
