package outcomes

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
)

// TestITSearch records outcomes on both sides of a UTC midnight and finds
// them by time, outcome, responder and schema through the index, with a
// counting proxy in front of dynalite to prove that no Scan is issued.
func TestITSearch(t *testing.T) {
	env := emulator.Require(t)
	proxy := emulator.NewOpCounter(t, env.DynamoDBURL)
	db := dynamodb.NewFromConfig(env.AWSConfig(t), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(proxy.URL) })
	name := emulator.UniqueName(t, "outcomes")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	midnight := time.Now().UTC().Truncate(24 * time.Hour)
	clk := testclock.New(midnight.Add(-2 * time.Minute))
	tbl := New(db, Config{TableName: name, Observer: "obs", WorkerID: "w1", Logger: testlog.Logger(t), Now: clk.Now})
	other := New(db, Config{TableName: name, Observer: "other", WorkerID: "w2", Logger: testlog.Logger(t), Now: clk.Now})
	ctx := t.Context()
	if err := tbl.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	const (
		slack = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
		pd    = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
	)
	run := func(tb *Table, id, responder, schema string, v verdict.Outcome) {
		t.Helper()
		if err := tb.Claim(ctx, Claim{CommandID: id, Digest: "d-" + id, Shard: "s", Sequence: id, Responder: responder, Schema: schema}); err != nil {
			t.Fatalf("Claim %s: %v", id, err)
		}
		if err := tb.Finish(ctx, Identity{CommandID: id, Digest: "d-" + id}, Final{Verdict: v, Reason: "r-" + id}); err != nil {
			t.Fatalf("Finish %s: %v", id, err)
		}
		clk.Add(time.Minute)
	}
	// 23:58, 23:59 the day before; 00:00, 00:01, 00:02, 00:03 after midnight.
	run(tbl, "c1", "slack", slack, verdict.Executed)
	run(tbl, "c2", "pagerduty", pd, verdict.DeadLettered)
	run(tbl, "c3", "pagerduty", pd, verdict.Executed)
	if err := tbl.Reject(ctx, Rejection{CommandID: "c4", Shard: "s", Sequence: "4", Responder: "pagerduty", Schema: pd, Reason: "no_responder: none configured"}); err != nil {
		t.Fatalf("Reject: %v", err)
	}
	clk.Add(time.Minute)
	run(other, "c5", "pagerduty", pd, verdict.Executed) // another observer sharing the table
	if err := tbl.Claim(ctx, Claim{CommandID: "c6", Digest: "d-c6", Shard: "s", Sequence: "6", Responder: "slack", Schema: slack}); err != nil {
		t.Fatalf("Claim c6: %v", err)
	}
	// A rejected copy of a command that ran leaves its outcome alone.
	if err := tbl.Reject(ctx, Rejection{CommandID: "c1", Reason: "expired: too old"}); err != nil {
		t.Fatalf("Reject c1: %v", err)
	}
	if rec, err := tbl.Get(ctx, "c4"); err != nil || rec.Outcome() != string(verdict.Rejected) || rec.Reason != "no_responder: none configured" {
		t.Fatalf("Get c4 = %+v, %v; want a rejected record", rec, err)
	}

	search := func(q Search) []string {
		t.Helper()
		if q.Until.IsZero() {
			q.Until = midnight.Add(time.Hour) // the table's clock stands at 00:03
		}
		var ids []string
		if err := tbl.Search(ctx, q, func(r *Record) error {
			ids = append(ids, r.CommandID+"="+r.Outcome())
			return nil
		}); err != nil {
			t.Fatalf("Search %+v: %v", q, err)
		}
		return ids
	}
	since := midnight.Add(-time.Hour)
	tests := []struct {
		name string
		q    Search
		want []string
	}{
		{"everything, across midnight", Search{Since: since},
			[]string{"c1=executed", "c2=dead_lettered", "c3=executed", "c4=rejected", "c6=in_progress"}},
		{"window [23:59, 00:01)", Search{Since: midnight.Add(-time.Minute), Until: midnight.Add(time.Minute)},
			[]string{"c2=dead_lettered", "c3=executed"}},
		{"failures", Search{Since: since, Outcomes: []string{string(verdict.DeadLettered), string(verdict.Rejected), string(verdict.Failed)}},
			[]string{"c2=dead_lettered", "c4=rejected"}},
		{"in progress", Search{Since: since, Outcomes: []string{StatusInProgress}}, []string{"c6=in_progress"}},
		{"one verdict", Search{Since: since, Outcomes: []string{string(verdict.Executed)}}, []string{"c1=executed", "c3=executed"}},
		{"one verdict and a responder", Search{Since: since, Outcomes: []string{string(verdict.Executed)}, Responder: "slack"}, []string{"c1=executed"}},
		{"responder", Search{Since: since, Responder: "pagerduty"}, []string{"c2=dead_lettered", "c3=executed", "c4=rejected"}},
		{"schema prefix without iglu:", Search{Since: since, Schema: "com.slack.sauna.commands/"}, []string{"c1=executed", "c6=in_progress"}},
		{"limit", Search{Since: since, Limit: 2}, []string{"c1=executed", "c2=dead_lettered"}},
		{"nothing after", Search{Since: midnight.Add(time.Hour), Until: midnight.Add(2 * time.Hour)}, nil},
	}
	proxy.Reset()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, search(tc.q)); diff != "" {
				t.Errorf("found (-want +got):\n%s", diff)
			}
		})
	}
	if n := proxy.Count("Scan"); n != 0 {
		t.Errorf("%d Scan calls; a search must only Query", n)
	}
	if proxy.Count("Query") == 0 {
		t.Errorf("no Query went through the proxy")
	}
}

// TestITSearchRejectedReopens: a rejected command is not final. Once the
// cause is fixed, the same command delivered from another record runs.
func TestITSearchRejectedReopens(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	tbl := e.worker(t, "w1", clk)
	ctx := t.Context()
	if err := tbl.Reject(ctx, Rejection{CommandID: "c", Shard: "s", Sequence: "1", Reason: "no_responder: x"}); err != nil {
		t.Fatalf("Reject: %v", err)
	}
	err := tbl.Claim(ctx, Claim{CommandID: "c", Digest: "dc", Shard: "s", Sequence: "1"})
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Claim of the same record = %v, want a duplicate", err)
	}
	if err := tbl.Claim(ctx, Claim{CommandID: "c", Digest: "dc", Shard: "s", Sequence: "2"}); err != nil {
		t.Fatalf("Claim of a new delivery: %v", err)
	}
	if err := tbl.Finish(ctx, Identity{CommandID: "c", Digest: "dc"}, Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	rec, err := tbl.Get(ctx, "c")
	if err != nil || rec.Outcome() != string(verdict.Executed) {
		t.Fatalf("Get = %+v, %v; want executed", rec, err)
	}
}

// TestITSearchIndexOnExistingTable: Init asks for the index on a table made
// without it (an outcomes table from an older sauna). dynalite 4 cannot add
// one to an on-demand table: it requires throughput for the new index, which
// AWS refuses for on-demand tables, and it would ignore the creation anyway
// (its UpdateTable only applies throughput changes). Init goes on without
// the index, and Search says what is missing rather than failing on
// DynamoDB's validation error. On AWS the index is built in the background.
func TestITSearchIndexOnExistingTable(t *testing.T) {
	env := emulator.Require(t)
	proxy := emulator.NewOpCounter(t, env.DynamoDBURL)
	db := dynamodb.NewFromConfig(env.AWSConfig(t), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(proxy.URL) })
	name := emulator.UniqueName(t, "outcomes")
	ctx := t.Context()
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrCommandID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrCommandID), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	tbl := New(db, Config{TableName: name, Observer: "obs", WorkerID: "w", Logger: testlog.Logger(t)})
	if err := tbl.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if proxy.Count("UpdateTable") != 1 {
		t.Errorf("UpdateTable calls = %d, want 1 (the index creation)", proxy.Count("UpdateTable"))
	}
	err := tbl.Search(ctx, Search{Since: time.Now().Add(-time.Hour)}, func(*Record) error { return nil })
	if !errors.Is(err, ErrNoIndex) {
		t.Fatalf("Search = %v, want ErrNoIndex", err)
	}
	if proxy.Count("Scan") != 0 {
		t.Errorf("a Scan was issued")
	}
}
