package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestRun runs the demo and checks its log: every line carries its
// service, set at start-up, and its order's id, set by a middleware
// outside httpvars; each task's lines, logged with InfoContext(gctx), carry
// the task's own var; and inventory logs the order and task that each
// task's call carried as baggage.
func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	require.NoError(t, run(&out))
	t.Log("\n" + out.String())

	var got []string
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte{'\n'}) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "a JSON log line: %s", line)
		got = append(got, fmt.Sprintf("%v %v %v %v", m["service"], m["msg"], m["order_id"], m["task"]))
	}
	var want []string
	for _, id := range []string{"o-1", "o-2"} {
		want = append(want,
			"orders order received "+id+" <nil>",
			"orders order done "+id+" <nil>")
		for _, task := range []string{"reserve", "price"} {
			want = append(want,
				"orders task started "+id+" "+task,
				"inventory stock checked "+id+" "+task)
		}
	}
	assert.ElementsMatch(t, want, got, "service, message, order_id and task of each line")
}
