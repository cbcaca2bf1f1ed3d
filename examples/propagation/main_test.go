package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestRun runs the demo and checks what B saw for each request.
func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	require.NoError(t, run(&out))
	t.Log("\n" + out.String())
	assert.Equal(t, `A got tenant=acme user=alice -> B saw: tenant=acme user=alice note=(not sent) otel-baggage="tenant=acme,user=alice"
A got tenant=globex user=bob -> B saw: tenant=globex user=bob note=(not sent) otel-baggage="tenant=globex,user=bob"
A got tenant=initech user=carol -> B saw: tenant=initech user=carol note=(not sent) otel-baggage="tenant=initech,user=carol"
`, out.String())
}
