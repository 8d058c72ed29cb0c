package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// scenarioReplay measures `sauna replay` (what it calls, in process) and
// `sauna outcomes` searches over an outcome table of many items.
func scenarioReplay(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	items := l.outcomeItems
	if e.outcomes > 0 {
		items = e.outcomes
	}
	s := &section{name: "replay", title: "9. Replay and outcome search",
		method: fmt.Sprintf("Replay: 1 shard with %d commands preloaded; deadletter.Replay (what `sauna replay` runs) reads the window "+
			"from its start and puts every command onto a second stream with new ids, one PutRecord at a time; commands/s = commands / "+
			"wall time, and the same for a dry run. Search: an outcome table of %d items spread over the last 24 h (90%% executed, "+
			"5%% dead_lettered, 5%% rejected; two responders; one item of each kind written through the outcomes table API and copied with BatchWriteItem); each search (what `sauna outcomes` "+
			"runs) is repeated %d times: median and slowest wall time, and the commands found.", l.replayCount, items, l.searchRepeats)}
	t := &table{cols: []string{kindSauna}}
	s.tables = []*table{t}

	dry, put, err := replayRun(ctx, e, l.replayCount)
	if err != nil {
		return nil, err
	}
	t.add(&row{metric: "replay, dry run (commands/s)", cells: []cell{dry}})
	t.add(&row{metric: "replay with --new-ids (commands/s)", cells: []cell{put}})

	tbl, now, err := fillOutcomes(ctx, e, items)
	if err != nil {
		return nil, err
	}
	searches := []struct {
		label string
		q     outcomes.Search
	}{
		{"20-minute window, every status", outcomes.Search{Since: now.Add(-6 * time.Hour), Until: now.Add(-6*time.Hour + 20*time.Minute)}},
		{"24 h, dead_lettered and rejected", outcomes.Search{Since: now.Add(-24 * time.Hour), Until: now,
			Outcomes: []string{string(verdict.DeadLettered), string(verdict.Rejected)}}},
		{"24 h, one responder, first 100", outcomes.Search{Since: now.Add(-24 * time.Hour), Until: now, Responder: "pagerduty", Limit: 100}},
	}
	for _, sr := range searches {
		var took []float64
		found := 0
		for range l.searchRepeats {
			found = 0
			start := time.Now()
			if err := tbl.Search(ctx, sr.q, func(*outcomes.Record) error { found++; return nil }); err != nil {
				return nil, fmt.Errorf("search %s: %w", sr.label, err)
			}
			took = append(took, float64(time.Since(start).Microseconds())/1000)
		}
		slices.Sort(took)
		t.add(&row{metric: "search " + sr.label + ": median / slowest (ms)",
			cells:   []cell{{text: fmt.Sprintf("%.0f / %.0f (%d found)", took[len(took)/2], took[len(took)-1], found), v: took[len(took)/2], ok: true}},
			noRatio: true})
	}
	s.notes = append(s.notes, "Search cost grows with the days searched and the items in them, not with the table: a search is one "+
		"Query per UTC day on the byDay index, and filters on status, responder and schema are applied by DynamoDB to the items of "+
		"those days. dynalite serves Query from one process on these cores, so these are emulator numbers.")
	return s, nil
}

func replayRun(ctx context.Context, e *env, n int) (dry, put cell, err error) {
	from, err := e.createStream(ctx, 1)
	if err != nil {
		return cell{}, cell{}, err
	}
	to, err := e.createStream(ctx, 1)
	if err != nil {
		return cell{}, cell{}, err
	}
	cmds := make([]cmdRef, n)
	for i := range cmds {
		cmds[i] = cmdRef{key: fmt.Sprintf("k%d", i%100), n: int64(i)}
	}
	if err := e.putBatch(ctx, from, cmds); err != nil {
		return cell{}, cell{}, err
	}
	for _, dryRun := range []bool{true, false} {
		start := time.Now()
		st, err := deadletter.Replay(ctx, e.kin, deadletter.Options{From: from.name, To: to.name, DryRun: dryRun, NewIDs: true})
		if err != nil {
			return cell{}, cell{}, fmt.Errorf("replay (dry run %v): %w", dryRun, err)
		}
		secs := time.Since(start).Seconds()
		got := st.Replayed
		if dryRun {
			got = st.Selected
		}
		if got != n {
			return cell{}, cell{}, fmt.Errorf("replay (dry run %v) handled %d of %d commands: %s", dryRun, got, n, st)
		}
		c := num(float64(n)/secs, "%.0f")
		log.Printf("replay: dry run %v: %d commands in %.1f s", dryRun, n, secs)
		if dryRun {
			dry = c
		} else {
			put = c
		}
	}
	return dry, put, nil
}

// fillOutcomes makes an outcome table with n items over the 24 h before
// now. One item of each kind (executed, dead_lettered, rejected, per
// responder) is written through the outcomes table API, as the daemon
// writes them; the rest are copies of those with their own commandId and
// times, written with BatchWriteItem, because a million conditional writes
// one at a time would take most of an hour on the emulator.
func fillOutcomes(ctx context.Context, e *env, n int) (*outcomes.Table, time.Time, error) {
	db := e.dynamo()
	now := time.Now().UTC().Truncate(time.Millisecond)
	name := e.name("outcomes")
	tbl := outcomes.New(db, outcomes.Config{TableName: name, Observer: "bench", WorkerID: "bench",
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err := tbl.Init(ctx); err != nil {
		return nil, now, err
	}
	// Templates by i % 20: 0 rejected, 1 dead_lettered, else executed; odd
	// i pagerduty, even slack.
	templates := map[int]map[string]ddbtypes.AttributeValue{}
	for k := range 4 {
		id := fmt.Sprintf("3fffffff-0000-4000-8000-%012d", k)
		responder, schema := "slack", "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
		if k%2 == 1 {
			responder, schema = "pagerduty", "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
		}
		var err error
		switch k {
		case 0:
			err = tbl.Reject(ctx, outcomes.Rejection{CommandID: id, Shard: "s", Sequence: "0", Responder: responder, Schema: schema, Reason: "expired: bench"})
		default:
			if err = tbl.Claim(ctx, outcomes.Claim{CommandID: id, Digest: "bench", Shard: "s", Sequence: "0", Responder: responder, Schema: schema}); err == nil {
				v := verdict.Executed
				if k == 1 {
					v = verdict.DeadLettered
				}
				err = tbl.Finish(ctx, outcomes.Identity{CommandID: id, Digest: "bench"}, outcomes.Final{Verdict: v})
			}
		}
		if err != nil {
			return nil, now, fmt.Errorf("template outcome: %w", err)
		}
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(name),
			Key: map[string]ddbtypes.AttributeValue{outcomes.AttrCommandID: &ddbtypes.AttributeValueMemberS{Value: id}}})
		if err != nil {
			return nil, now, err
		}
		// The template items stay out of the searches' results.
		if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(name),
			Key: map[string]ddbtypes.AttributeValue{outcomes.AttrCommandID: &ddbtypes.AttributeValueMemberS{Value: id}}}); err != nil {
			return nil, now, err
		}
		templates[k] = out.Item
	}
	kindOf := func(i int) int {
		switch {
		case i%20 == 0:
			return 0
		case i%20 == 1:
			return 1
		}
		return 2 + i%2
	}
	start := time.Now()
	err := inChunks(ctx, n, 25, 8, func(ctx context.Context, lo, hi int) error {
		var reqs []ddbtypes.WriteRequest
		for i := lo; i < hi; i++ {
			item := maps.Clone(templates[kindOf(i)])
			at := now.Add(-24*time.Hour + time.Duration(i)*24*time.Hour/time.Duration(n))
			ts := &ddbtypes.AttributeValueMemberS{Value: at.Format("2006-01-02T15:04:05.000Z07:00")}
			item[outcomes.AttrCommandID] = &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("30000000-0000-4000-8000-%012d", i)}
			item[outcomes.AttrSearchDay] = &ddbtypes.AttributeValueMemberS{Value: "bench#" + at.Format(time.DateOnly)}
			// The index's range key and its companion, as the table
			// names them (docs/operations.md).
			item["firstAttempt"], item["lastAttempt"] = ts, ts
			reqs = append(reqs, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: item}})
		}
		for len(reqs) > 0 {
			out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{name: reqs}})
			if err != nil {
				return err
			}
			reqs = out.UnprocessedItems[name]
		}
		return nil
	})
	if err != nil {
		return nil, now, err
	}
	log.Printf("replay: %d outcomes written in %.0f s", n, time.Since(start).Seconds())
	// The copies must be what the search sees: count the failures.
	found := 0
	if err := tbl.Search(ctx, outcomes.Search{Since: now.Add(-25 * time.Hour), Until: now.Add(time.Millisecond),
		Outcomes: []string{string(verdict.DeadLettered), string(verdict.Rejected)}}, func(*outcomes.Record) error { found++; return nil }); err != nil {
		return nil, now, err
	}
	if want := (n+19)/20 + (n+18)/20; found != want {
		return nil, now, fmt.Errorf("outcome table: %d failures found, want %d: the copied items do not match the index", found, want)
	}
	return tbl, now, nil
}
