package contextvars_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
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
