package kinesis

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/responders/delivery/deliverytest"
)

// vendorResponder posts each command once through a real delivery.Client,
// as the vendor responders do.
type vendorResponder struct {
	client *delivery.Client
	url    string
}

func (v *vendorResponder) Respond(ctx context.Context, _ *responders.Command) error {
	return v.client.Send(ctx, delivery.Request{URL: v.url, Body: []byte(`{}`)}, func(r *delivery.Response) error {
		return delivery.Standard(r, delivery.Is(http.StatusOK), r.Text())
	})
}

// delivery.Client.Send makes one request; the observer's loop retries. A
// transient failure still ends executed, a vendor's Retry-After is still
// waited out, and a permanent refusal still fails at once.
func TestExecuteRetriesWhatDeliveryHandsUp(t *testing.T) {
	type R = deliverytest.Reply
	tests := []struct {
		name    string
		replies []R
		result  verdict.Outcome
		// minGaps are the least waits between successive requests.
		minGaps []time.Duration
	}{
		{"503 once, then 200", []R{{Status: 503}, {Status: 200}}, verdict.Executed, []time.Duration{0}},
		{"timeouts, then 200", []R{{Status: 200, Delay: time.Minute}, {Status: 200, Delay: time.Minute}, {Status: 200}}, verdict.Executed, []time.Duration{10 * time.Second, 10 * time.Second}},
		{"429 with Retry-After, then 200", []R{{Status: 429, Header: map[string]string{"Retry-After": "7"}}, {Status: 200}}, verdict.Executed, []time.Duration{7 * time.Second}},
		{"400", []R{{Status: 400, Body: "invalid_payload"}}, verdict.Failed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, func(o *Observer) { o.cfg.RetryBudget = 5 * time.Minute })
				vendor := deliverytest.NewVendor(tt.replies...)
				srv := deliverytest.NewServer(t, vendor)
				client, err := delivery.New(delivery.Options{Limit: delivery.Unlimited, Transport: srv.Transport})
				if err != nil {
					t.Fatal(err)
				}
				h.p.o.dispatch.Replace(map[string]responders.Enabled{"testslack": {ID: "slack", Module: "testslack",
					Responder: &vendorResponder{client: client, url: srv.URL + "/hook"}}})
				cp := &fakeCheckpointer{}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("1", "hi")}})
				h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})

				if got, want := h.results(), []string{"1=" + string(tt.result)}; !slices.Equal(got, want) {
					t.Errorf("outcomes %v, want %v", got, want)
				}
				reqs := vendor.Requests()
				if len(reqs) != len(tt.minGaps)+1 {
					t.Fatalf("the vendor got %d requests, want %d", len(reqs), len(tt.minGaps)+1)
				}
				for i, least := range tt.minGaps {
					if gap := reqs[i+1].At.Sub(reqs[i].At); gap < least {
						t.Errorf("request %d came %v after the previous one, want at least %v", i+2, gap, least)
					}
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				if n := h.outcomes[0].Attempts; n != len(reqs) {
					t.Errorf("the outcome counts %d attempts for %d requests", n, len(reqs))
				}
			})
		})
	}
}
