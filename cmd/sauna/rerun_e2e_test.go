package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// dgSentSince lists the commands that reached the receiver from path at or
// after since.
func dgSentSince(hits map[string][]dgHit, path string, since time.Time) []string {
	var ids []string
	for id, hs := range hits {
		if slices.ContainsFunc(hs, func(h dgHit) bool { return h.path == path && !h.at.Before(since) }) {
			ids = append(ids, id)
		}
	}
	return ids
}

// dgOutcomesOf reads the items of ids (consistently, 100 a call); an id
// without an item is absent from the result.
func dgOutcomesOf(t testing.TB, env emulator.Env, table string, ids []string) map[string]dgOutcome {
	t.Helper()
	db := dgDB(t, env)
	rows := map[string]dgOutcome{}
	for from := 0; from < len(ids); from += 100 {
		var keys []map[string]ddbtypes.AttributeValue
		for _, id := range ids[from:min(from+100, len(ids))] {
			keys = append(keys, map[string]ddbtypes.AttributeValue{"commandId": &ddbtypes.AttributeValueMemberS{Value: id}})
		}
		req := map[string]ddbtypes.KeysAndAttributes{table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for len(req) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			cancel()
			if err != nil {
				t.Fatalf("outcome table %s: %v", table, err)
			}
			read := time.Now()
			for _, item := range out.Responses[table] {
				rows[dgString(item, "commandId")] = dgParseOutcome(item, read)
			}
			req = out.UnprocessedKeys
		}
	}
	return rows
}

// dgCheckNoRerun asserts the first guarantee of idempotency on the
// receiver's side: a command read as done in the outcome table (rows, a
// reading of it; what says when) reaches the receiver no more after that
// reading, whoever reads its record again (a restarted worker, the new owner
// of a shard, a worker that was frozen). Its one execution was received
// before its outcome was written, so any request that arrives after the
// item was read is a second one. It returns how many commands it checked.
func dgCheckNoRerun(t *testing.T, what string, rows map[string]dgOutcome, hits map[string][]dgHit) int {
	t.Helper()
	checked, bad := 0, 0
	for id, o := range rows {
		if o.status != "done" {
			continue
		}
		checked++
		var late []string
		for _, h := range hits[id] {
			if h.at.After(o.read) {
				late = append(late, fmt.Sprintf("%s@+%s", strings.TrimPrefix(h.path, "/"), h.at.Sub(o.read).Round(time.Millisecond)))
			}
		}
		if len(late) == 0 {
			continue
		}
		bad++
		if bad <= 5 {
			slices.Sort(late)
			t.Errorf("command %s, recorded done (%s, %d attempts) %s, reached the receiver again after that reading: %s",
				id, o.verdict, o.attempts, what, strings.Join(late, ", "))
		}
	}
	if bad > 0 {
		t.Errorf("%d commands recorded done %s were sent again", bad, what)
	}
	return checked
}
