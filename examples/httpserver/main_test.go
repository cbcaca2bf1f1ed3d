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

// TestRun runs the demo and checks its log: every line logged for a
// request, by the handler, by a goroutine started with Go and by a worker
// pool through Wrap, carries that request's id and user, and the service
// set at start-up; the lines outside requests carry none.
func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	require.NoError(t, run(&out))
	t.Log("\n" + out.String())

	users := map[string]string{"req-1": "alice", "req-2": "bob", "req-3": "carol"}
	perRequest := map[string][]string{}
	var outside []string
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte{'\n'}) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "a JSON log line: %s", line)
		msg := fmt.Sprint(m["msg"])
		id, ok := m["request_id"].(string)
		if !ok {
			outside = append(outside, msg)
			assert.NotContains(t, m, "user", "%s", line)
			continue
		}
		assert.Equal(t, users[id], m["user"], "the user of %s: %s", id, line)
		assert.Equal(t, "demo", m["service"], "%s", line)
		perRequest[id] = append(perRequest[id], msg)
	}
	assert.ElementsMatch(t, []string{"listening", "shut down"}, outside)
	for id := range users {
		assert.ElementsMatch(t, []string{
			"handling request",
			"fanned out with contextvars.Go",
			"run by a worker pool through contextvars.Wrap",
		}, perRequest[id], "the lines of %s", id)
	}
}
