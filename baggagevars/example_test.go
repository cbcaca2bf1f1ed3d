package baggagevars_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
)

// This example demonstrates a var travelling from a client to a service:
// the Transport writes it into the baggage header of the request, and the
// Handler, middleware of the shape func(http.Handler) http.Handler, sets
// it in the request's context on the other side.
func ExamplePropagator_Handler() {
	tenant := contextvars.NewVar[string]("tenant")
	p := baggagevars.New(baggagevars.String(tenant, "tenant"))
	// Errors (a value too large to send, a header that does not parse) go
	// to the handler, or, with none set, to slog.Default().
	p.SetErrorHandler(func(err error) { fmt.Println("baggage:", err) })

	srv := httptest.NewServer(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _ := tenant.Get()
		fmt.Fprint(w, "the service sees tenant=", t)
	})))
	defer srv.Close()
	client := &http.Client{Transport: p.Transport(srv.Client().Transport)}

	err := contextvars.New().Run(func() error {
		tenant.Set("acme")
		resp, err := client.Get(srv.URL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: the service sees tenant=acme
}
