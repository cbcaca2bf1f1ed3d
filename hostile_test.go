package contextvars_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// TestHostileInput lists every careless or hostile input the API can be
// given. Each must end in a clear "contextvars: " error, a panic whose value
// is such an error (where the signature has no error result), or a
// documented harmless result; never a nil-pointer dereference, never
// corrupted state.
func TestHostileInput(t *testing.T) {
	var (
		nilCtx *contextvars.Context
		nilVar *contextvars.Var[int]
		nilTok *contextvars.Token[int]
	)
	v := contextvars.NewVar[int]("v")

	type outcome int
	const (
		returnsError outcome = iota // an error starting "contextvars: "
		panicsError                 // a panic with such an error
		harmless                    // a documented result; no panic
	)
	cases := []struct {
		name string
		want outcome
		call func() error // the error returned, if any
	}{
		{"nil Context: Run", returnsError, func() error { return nilCtx.Run(func() error { return nil }) }},
		{"nil Context: Call", returnsError, func() error {
			_, err := contextvars.Call(nilCtx, func() (int, error) { return 0, nil })
			return err
		}},
		{"nil Context: reads", harmless, func() error {
			_ = nilCtx.Len()
			_ = nilCtx.Contains(v)
			_, _ = nilCtx.Get(v)
			for range nilCtx.All() {
			}
			for range nilCtx.Keys() {
			}
			for range nilCtx.Values() {
			}
			_ = nilCtx.String()
			_ = nilCtx.Copy()
			_, _ = v.In(nilCtx)
			return nil
		}},
		{"nil func: Run", returnsError, func() error { return contextvars.New().Run(nil) }},
		{"nil func: Call", returnsError, func() error {
			_, err := contextvars.Call[int](contextvars.New(), nil)
			return err
		}},
		{"nil func: Go", panicsError, func() error { contextvars.Go(nil); return nil }},
		{"nil Var: Get", panicsError, func() error { nilVar.Get(); return nil }},
		{"nil Var: GetOr", panicsError, func() error { nilVar.GetOr(0); return nil }},
		{"nil Var: Set", panicsError, func() error { nilVar.Set(1); return nil }},
		{"nil Var: Reset", returnsError, func() error { return nilVar.Reset(v.Set(1)) }},
		{"nil Var: reads", harmless, func() error {
			_, _ = nilVar.Name(), nilVar.String()
			_, _ = nilVar.Default()
			_, _ = nilVar.In(contextvars.New())
			return nil
		}},
		{"nil Var as a Key", harmless, func() error {
			c := contextvars.New()
			_, _ = c.Get(nilVar)
			_ = c.Contains(nilVar)
			return nil
		}},
		{"nil Key", harmless, func() error {
			_, _ = contextvars.New().Get(nil)
			return nil
		}},
		{"nil Token: Var.Reset", returnsError, func() error { return v.Reset(nil) }},
		{"nil Token: Token.Reset", returnsError, func() error { return nilTok.Reset() }},
		{"nil Token: reads", harmless, func() error {
			_ = nilTok.Var()
			_, _ = nilTok.OldValue()
			_ = nilTok.String()
			return nil
		}},
		{"zero Token: Var.Reset", returnsError, func() error { return v.Reset(&contextvars.Token[int]{}) }},
		{"zero Token: Token.Reset", returnsError, func() error { return (&contextvars.Token[int]{}).Reset() }},
		{"token reset twice", returnsError, func() error {
			tok := v.Set(1)
			if err := tok.Reset(); err != nil {
				return errors.New("first reset failed: " + err.Error())
			}
			return tok.Reset()
		}},
		{"token reset from another goroutine than Set's", returnsError, func() error {
			tok := v.Set(1)
			errc := make(chan error)
			go func() { errc <- tok.Reset() }()
			return <-errc
		}},
		{"token set in another goroutine, reset here", returnsError, func() error {
			tc := make(chan *contextvars.Token[int])
			go func() { tc <- v.Set(1) }()
			return v.Reset(<-tc)
		}},
		{"token reused across goroutines", returnsError, func() error {
			tok := v.Set(1)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { errs[i] = tok.Reset() })
			}
			wg.Wait()
			for _, err := range errs {
				if !errors.Is(err, contextvars.ErrTokenContext) {
					return errors.New("unexpected: " + err.Error())
				}
			}
			if err := tok.Reset(); err != nil { // still good here
				return errors.New("token no longer good in its context: " + err.Error())
			}
			return tok.Reset() // now used
		}},
		{"Run of the context being run", returnsError, func() error {
			c := contextvars.New()
			var inner error
			_ = c.Run(func() error { inner = c.Run(func() error { return nil }); return nil })
			return inner
		}},
		{"zero Context and zero Var", harmless, func() error {
			c := &contextvars.Context{}
			var zv contextvars.Var[string]
			return c.Run(func() error {
				defer zv.Set("x").Reset()
				if got, _ := zv.Get(); got != "x" {
					return errors.New("zero Var did not hold its value")
				}
				return nil
			})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err, recovered := runIsolated(tc.call)
			switch tc.want {
			case returnsError:
				require.Nil(t, recovered, "panicked")
				require.Error(t, err)
				assert.True(t, strings.HasPrefix(err.Error(), "contextvars: "), "error %q does not start with contextvars: ", err)
			case panicsError:
				perr, ok := recovered.(error)
				require.True(t, ok, "want a panic with an error, got %#v (err %v)", recovered, err)
				assert.True(t, strings.HasPrefix(perr.Error(), "contextvars: "), "panic %q does not start with contextvars: ", perr)
			case harmless:
				require.Nil(t, recovered, "panicked")
				require.NoError(t, err)
			}
		})
	}
}

// runIsolated runs call in a new context, on a goroutine of its own, so that
// nothing carries over between cases, and returns call's error and what it
// panicked with, if it did.
func runIsolated(call func() error) (err error, recovered any) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { recovered = recover() }()
		err = contextvars.New().Run(call)
	}()
	<-done
	return err, recovered
}
