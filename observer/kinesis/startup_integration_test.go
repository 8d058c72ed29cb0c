package kinesis

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// The outcome table is made ready while the lease table is, not after it:
// a proxy holds the lease table's first DynamoDB request until a request
// for the outcome table has arrived. Done one after the other, the two
// would wait on each other and nothing would be delivered.
func TestIntegrationTablesReadyTogether(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "together")
	id := emulator.UniqueName(t, "obs")
	outcomeTable := id + "-commands"

	outcomeSeen := make(chan struct{})
	var seenOnce sync.Once
	proxy := emulator.NewProxy(t, env.DynamoDBURL, func(r *http.Request, body []byte) {
		var req struct{ TableName string }
		_ = json.Unmarshal(body, &req)
		switch {
		case req.TableName == outcomeTable:
			seenOnce.Do(func() { close(outcomeSeen) })
		case req.TableName == id && strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".DescribeTable"):
			select {
			case <-outcomeSeen:
			case <-r.Context().Done():
			}
		}
	})
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy)

	env.CreateStream(t, stream, 1)
	putBatch(t, env.Kinesis(t), stream, 1, 1, 1, "hi")
	col := &collector{}
	stop := startWorker(t, testConfig(id, stream), col, newVendorLog(), nil)
	col.waitFor(t, 1, 90*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("observer: %v", err)
	}
}
