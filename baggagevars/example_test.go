package baggagevars_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
)

// A var travels from a client's context to the server's handler in the
// W3C baggage header: the Transport sends it, the Handler sets it for the
// request. Errors (a value too large to send, a header that does not
// parse) go to the error handler, or to slog.Default() when none is set.
func Example() {
	tenant := contextvars.NewVar[string]("tenant")
	p := baggagevars.New(baggagevars.String(tenant, "tenant"))
	p.SetErrorHandler(func(err error) { fmt.Println("baggage:", err) })

	srv := httptest.NewServer(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _ := tenant.Get()
		fmt.Fprintf(w, "the server sees tenant=%s", t)
	})))
	defer srv.Close()
	client := &http.Client{Transport: p.Transport(&http.Transport{})}
	defer client.CloseIdleConnections()

	err := contextvars.New().Run(func() error {
		tenant.Set("acme")
		resp, err := client.Get(srv.URL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		fmt.Println(string(body))
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: the server sees tenant=acme
}
