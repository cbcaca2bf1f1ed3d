package contextvars_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// TestKeepAlive_implicitContextCrossesRequests shows why a server must run
// each request in a Run: with keep-alive, net/http serves the requests of
// one connection on one goroutine, so a handler that sets a var outside any
// Run leaves it, in the goroutine's implicit context, for the next request
// on that connection. In a Run per request, nothing crosses.
func TestKeepAlive_implicitContextCrossesRequests(t *testing.T) {
	user := contextvars.NewVarWithDefault("user", "nobody")
	cases := []struct {
		name     string
		perReq   bool
		wantSeen []string // what each request sees before it sets the var
	}{
		{"Set outside Run", false, []string{"nobody", "alice", "bob"}},
		{"Run per request", true, []string{"nobody", "nobody", "nobody"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			handle := func(w http.ResponseWriter, r *http.Request) {
				seen, _ := user.Get()
				user.Set(r.URL.Query().Get("user"))
				_, _ = io.WriteString(w, seen)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tc.perReq {
					handle(w, r)
					return
				}
				_ = contextvars.New().Run(func() error { handle(w, r); return nil })
			}))
			defer srv.Close()
			tr := &http.Transport{MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			var got []string
			for _, name := range []string{"alice", "bob", "carol"} {
				resp, err := client.Get(srv.URL + "/?user=" + name)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				got = append(got, string(body))
			}
			assert.Equal(t, tc.wantSeen, got, "what each request on one keep-alive connection saw")
		})
	}
}

// TestHTTPVars_leavesNothing serves many requests, sequential and
// concurrent, through the httpvars middleware, then stops the server:
// no registry entry is left behind (goleak in TestMain checks goroutines).
func TestHTTPVars_leavesNothing(t *testing.T) {
	requestID := contextvars.NewVar[string]("request_id")
	before, implicitBefore := contextvars.RegistryEntries()
	srv := httptest.NewServer(httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requestID.Set(r.URL.Path)
		contextvars.Go(func() { requestID.Set("child") })
		_, _ = io.WriteString(w, "ok")
	})))
	tr := &http.Transport{MaxConnsPerHost: 4}
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				resp, err := client.Get(fmt.Sprintf("%s/%d/%d", srv.URL, g, i))
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	srv.Close()
	assert.Eventually(t, func() bool {
		after, implicitAfter := contextvars.RegistryEntries()
		return after <= before && implicitAfter <= implicitBefore
	}, 5*time.Second, time.Millisecond, "no registry entry left behind by 400 requests")
}
