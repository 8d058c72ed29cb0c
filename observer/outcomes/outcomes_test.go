package outcomes

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/ddbtable/ddbfake"
	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/verdict"
)

const unitCallTimeout = 2 * time.Second

func newFake(t *testing.T) *ddbfake.DB { return ddbfake.New(t, unitCallTimeout) }

func newUnitTable(t *testing.T, db *ddbfake.DB, clk *testclock.Clock, logger *slog.Logger) *Table {
	t.Helper()
	if logger == nil {
		logger = testlog.Logger(t)
	}
	tbl := New(db, Config{
		TableName:    "obs-commands",
		Observer:     "obs",
		WorkerID:     "worker-a",
		ClaimTimeout: time.Minute,
		CallTimeout:  unitCallTimeout,
		Retention:    48 * time.Hour,
		Logger:       logger,
		Now:          clk.Now,
	})
	tbl.waitMinDelay, tbl.waitMaxDelay = time.Millisecond, time.Millisecond
	return tbl
}

func activeTable() *types.TableDescription {
	return &types.TableDescription{
		TableName:            aws.String("obs-commands"),
		TableStatus:          types.TableStatusActive,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrCommandID), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrCommandID), AttributeType: types.ScalarAttributeTypeS}},
		BillingModeSummary:   &types.BillingModeSummary{BillingMode: types.BillingModePayPerRequest},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndexDescription{
			{IndexName: aws.String(IndexByDay), IndexStatus: types.IndexStatusActive},
		},
	}
}

func ttlOut(status types.TimeToLiveStatus, attr string) (*dynamodb.DescribeTimeToLiveOutput, error) {
	d := &types.TimeToLiveDescription{TimeToLiveStatus: status}
	if attr != "" {
		d.AttributeName = aws.String(attr)
	}
	return &dynamodb.DescribeTimeToLiveOutput{TimeToLiveDescription: d}, nil
}

func apiErr(code string) error { return &smithy.GenericAPIError{Code: code, Message: code + " (test)"} }

func TestInit(t *testing.T) {
	exists := func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		return &dynamodb.DescribeTableOutput{Table: activeTable()}, nil
	}
	ttlDisabled := func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
		return ttlOut(types.TimeToLiveStatusDisabled, "")
	}
	enableOK := func(in *dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error) {
		spec := in.TimeToLiveSpecification
		if aws.ToString(spec.AttributeName) != AttrExpiresAt || !aws.ToBool(spec.Enabled) {
			return nil, errors.New("wrong TTL specification")
		}
		return &dynamodb.UpdateTimeToLiveOutput{}, nil
	}
	tests := []struct {
		name    string
		setup   func(f *ddbfake.DB)
		wantOps []string
		wantErr string // substring; empty: success
		wantLog string // substring of the debug log
	}{
		{
			name: "existing table, TTL off: enabled",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable, f.OnDescribeTimeToLive, f.OnUpdateTimeToLive = exists, ttlDisabled, enableOK
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive", "UpdateTimeToLive"},
		},
		{
			name: "missing table: created PAY_PER_REQUEST, waited for, TTL already on",
			setup: func(f *ddbfake.DB) {
				calls := 0
				f.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
					calls++
					switch calls {
					case 1:
						return nil, &types.ResourceNotFoundException{Message: aws.String("no table")}
					case 2:
						d := activeTable()
						d.TableStatus = types.TableStatusCreating
						return &dynamodb.DescribeTableOutput{Table: d}, nil
					}
					return &dynamodb.DescribeTableOutput{Table: activeTable()}, nil
				}
				f.OnCreateTable = func(in *dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
					if in.BillingMode != types.BillingModePayPerRequest || aws.ToString(in.KeySchema[0].AttributeName) != AttrCommandID ||
						len(in.GlobalSecondaryIndexes) != 1 || aws.ToString(in.GlobalSecondaryIndexes[0].IndexName) != IndexByDay {
						return nil, errors.New("wrong table definition")
					}
					return &dynamodb.CreateTableOutput{}, nil
				}
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					return ttlOut(types.TimeToLiveStatusEnabled, AttrExpiresAt)
				}
			},
			wantOps: []string{"DescribeTable", "CreateTable", "DescribeTable", "DescribeTable", "DescribeTimeToLive"},
		},
		{
			name: "concurrent creator: ResourceInUse is not an error",
			setup: func(f *ddbfake.DB) {
				calls := 0
				f.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
					calls++
					if calls == 1 {
						return nil, &types.ResourceNotFoundException{}
					}
					return &dynamodb.DescribeTableOutput{Table: activeTable()}, nil
				}
				f.OnCreateTable = func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
					return nil, &types.ResourceInUseException{Message: aws.String("being created")}
				}
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					return ttlOut(types.TimeToLiveStatusEnabling, AttrExpiresAt)
				}
			},
			wantOps: []string{"DescribeTable", "CreateTable", "DescribeTable", "DescribeTimeToLive"},
		},
		{
			name: "emulator without UpdateTimeToLive: debug log, no error",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable, f.OnDescribeTimeToLive = exists, ttlDisabled
				f.OnUpdateTimeToLive = func(*dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error) {
					return nil, apiErr("UnknownOperationException")
				}
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive", "UpdateTimeToLive"},
			wantLog: "does not support UpdateTimeToLive",
		},
		{
			name: "emulator without any TTL API: debug log, no error",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = exists
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					return nil, apiErr("UnknownOperationException")
				}
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive"},
			wantLog: "does not support TTL",
		},
		{
			name: "AWS refuses UpdateTimeToLive: the error surfaces",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = exists
				f.OnDescribeTimeToLive = ttlDisabled
				f.OnUpdateTimeToLive = func(*dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error) {
					return nil, apiErr("AccessDeniedException")
				}
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive", "UpdateTimeToLive", "DescribeTimeToLive"},
			wantErr: "enable TTL on expiresAt",
		},
		{
			name: "concurrent TTL change: refused, but enabled by the other starter",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = exists
				calls := 0
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					calls++
					if calls == 1 {
						return ttlOut(types.TimeToLiveStatusDisabled, "")
					}
					return ttlOut(types.TimeToLiveStatusEnabling, AttrExpiresAt)
				}
				f.OnUpdateTimeToLive = func(*dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error) {
					return nil, apiErr("ValidationException")
				}
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive", "UpdateTimeToLive", "DescribeTimeToLive"},
		},
		{
			name: "TTL being disabled: error",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = exists
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					return ttlOut(types.TimeToLiveStatusDisabling, AttrExpiresAt)
				}
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive"},
			wantErr: "being disabled",
		},
		{
			name: "TTL on another attribute: kept",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = exists
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					return ttlOut(types.TimeToLiveStatusEnabled, "ttl")
				}
			},
			wantOps: []string{"DescribeTable", "DescribeTimeToLive"},
			wantLog: "TTL on another attribute",
		},
		{
			name: "existing table without the search index: index requested, not waited for",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
					d := activeTable()
					d.GlobalSecondaryIndexes = nil
					return &dynamodb.DescribeTableOutput{Table: d}, nil
				}
				f.OnUpdateTable = func(in *dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error) {
					if len(in.GlobalSecondaryIndexUpdates) != 1 || in.GlobalSecondaryIndexUpdates[0].Create == nil {
						return nil, errors.New("not an index creation")
					}
					c := in.GlobalSecondaryIndexUpdates[0].Create
					if aws.ToString(c.IndexName) != IndexByDay || aws.ToString(c.KeySchema[0].AttributeName) != AttrSearchDay ||
						c.ProvisionedThroughput != nil {
						return nil, errors.New("wrong index definition")
					}
					return &dynamodb.UpdateTableOutput{}, nil
				}
				f.OnDescribeTimeToLive = func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error) {
					return ttlOut(types.TimeToLiveStatusEnabled, AttrExpiresAt)
				}
			},
			wantOps: []string{"DescribeTable", "UpdateTable", "DescribeTimeToLive"},
			wantLog: "adding index",
		},
		{
			name: "wrong key schema: refused",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
					d := activeTable()
					d.KeySchema[0].AttributeName = aws.String("ShardID")
					return &dynamodb.DescribeTableOutput{Table: d}, nil
				}
			},
			wantOps: []string{"DescribeTable"},
			wantErr: "not an outcomes table",
		},
		{
			name: "describe fails",
			setup: func(f *ddbfake.DB) {
				f.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
					return nil, apiErr("AccessDeniedException")
				}
			},
			wantOps: []string{"DescribeTable"},
			wantErr: "describe: api error AccessDeniedException",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			tc.setup(f)
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			err := newUnitTable(t, f, newClock(), logger).Init(t.Context())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Init: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Init error = %v, want one containing %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantOps, f.Ops()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

func TestInitEmptyName(t *testing.T) {
	tbl := New(newFake(t), Config{})
	if err := tbl.Init(t.Context()); err == nil {
		t.Fatal("Init with an empty table name succeeded")
	}
}

func TestDefaults(t *testing.T) {
	tbl := New(newFake(t), Config{TableName: "x-commands"})
	got := []time.Duration{tbl.cfg.Retention, tbl.cfg.ClaimTimeout, tbl.cfg.CallTimeout, tbl.cfg.TableWaitTimeout}
	want := []time.Duration{7 * 24 * time.Hour, 2 * time.Minute, 10 * time.Second, 2 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if tbl.now == nil {
		t.Error("no clock")
	}
}

// item builds a stored item from a Record, as the table writes it.
func item(r Record, token string) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		AttrCommandID: s(r.CommandID),
		attrStatus:    s(r.Status),
		attrAttempts:  n(int64(r.Attempts)),
	}
	add := func(name, v string) {
		if v != "" {
			m[name] = s(v)
		}
	}
	add(attrObserver, r.Observer)
	add(attrShard, r.Shard)
	add(attrSequence, r.Sequence)
	add(attrResponder, r.Responder)
	add(attrVerdict, string(r.Verdict))
	add(attrReason, r.Reason)
	add(attrOwner, r.Owner)
	add(attrToken, token)
	add(attrDigest, r.Digest)
	add(attrSchema, r.Schema)
	if r.Conflict {
		m[AttrCommandID] = s(conflictKey(Identity{CommandID: r.CommandID, Digest: r.Digest}))
	}
	if len(r.Conflicts) > 0 {
		m[attrConflicts] = &types.AttributeValueMemberSS{Value: r.Conflicts}
	}
	if !r.FirstAttempt.IsZero() {
		m[attrFirstAttempt] = s(formatTime(r.FirstAttempt))
	}
	if !r.LastAttempt.IsZero() {
		m[attrLastAttempt] = s(formatTime(r.LastAttempt))
	}
	if !r.ClaimedUntil.IsZero() {
		m[attrClaimedUntil] = millis(r.ClaimedUntil)
	}
	if !r.ExpiresAt.IsZero() {
		m[AttrExpiresAt] = n(r.ExpiresAt.Unix())
	}
	return m
}

func conditionFailed() error {
	return &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
}

func TestClaimNew(t *testing.T) {
	clk := newClock()
	f := newFake(t)
	var put *dynamodb.PutItemInput
	f.OnPutItem = func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		put = in
		return &dynamodb.PutItemOutput{}, nil
	}
	tbl := newUnitTable(t, f, clk, nil)
	if err := tbl.Claim(t.Context(), Claim{CommandID: "c1", Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0", Shard: "shardId-1", Sequence: "42", Responder: "slack"}); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	now := clk.Now()
	want := Record{
		CommandID: "c1", Observer: "obs", Shard: "shardId-1", Sequence: "42", Responder: "slack",
		Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0",
		Status: StatusInProgress, Owner: "worker-a", Attempts: 1,
		FirstAttempt: now, LastAttempt: now,
		ClaimedUntil: now.Add(time.Minute), ExpiresAt: now.Add(48 * time.Hour).Truncate(time.Second),
	}
	if diff := cmp.Diff(&want, parseRecord(put.Item)); diff != "" {
		t.Errorf("item (-want +got):\n%s", diff)
	}
	if got := aws.ToString(put.ConditionExpression); got != "attribute_not_exists(#commandId)" {
		t.Errorf("condition = %q", got)
	}
	if tok, _ := str(put.Item, attrToken); len(tok) != 32 {
		t.Errorf("claim token %q, want 32 hex digits", tok)
	}
	// The same command again, from this worker (another record with the same
	// commandId): refused locally, without a call.
	before := len(f.Ops())
	if err := tbl.Claim(t.Context(), Claim{CommandID: "c1", Digest: testDigest, Shard: "shardId-2", Sequence: "7"}); !errors.Is(err, ErrClaimedElsewhere) {
		t.Errorf("second Claim = %v, want ErrClaimedElsewhere", err)
	}
	if len(f.Ops()) != before {
		t.Errorf("second Claim called DynamoDB: %v", f.Ops()[before:])
	}
}

func TestClaimExisting(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	claim := Claim{CommandID: "c1", Digest: testDigest, Shard: "shardId-1", Sequence: "42", Responder: "slack"}
	done := Record{
		CommandID: "c1", Observer: "obs", Shard: "shardId-1", Sequence: "42", Responder: "slack", Digest: testDigest,
		Status: StatusDone, Verdict: verdict.Executed, Owner: "worker-b", Attempts: 2,
		FirstAttempt: now.Add(-time.Minute), LastAttempt: now.Add(-time.Second), ExpiresAt: now.Add(time.Hour).Truncate(time.Second),
	}
	dead := done
	dead.Verdict, dead.Reason = verdict.DeadLettered, "failed_permanently: 400"
	live := Record{
		CommandID: "c1", Digest: testDigest, Status: StatusInProgress, Owner: "worker-b", Attempts: 1,
		FirstAttempt: now, LastAttempt: now, ClaimedUntil: now.Add(time.Millisecond),
	}
	expired := live
	expired.ClaimedUntil = now
	// Written by a version that recorded no digest: the same command.
	legacyDone, legacyDead, legacyExpired := done, dead, expired
	legacyDone.Digest, legacyDead.Digest, legacyExpired.Digest = "", "", ""

	tests := []struct {
		name       string
		stored     Record
		claim      Claim
		update     func(*testing.T, *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
		wantDup    *Record
		wantErr    error
		wantUpdate bool
	}{
		{name: "done: duplicate", stored: done, claim: claim, wantDup: &done},
		{name: "failed: duplicate", stored: func() Record { r := done; r.Verdict = verdict.Failed; return r }(), claim: claim,
			wantDup: func() *Record { r := done; r.Verdict = verdict.Failed; return &r }()},
		{name: "dead-lettered, redelivered at the same place: duplicate", stored: dead, claim: claim, wantDup: &dead},
		{name: "dead-lettered, replayed elsewhere: claimed again", stored: dead,
			claim: Claim{CommandID: "c1", Digest: testDigest, Shard: "shardId-3", Sequence: "99"}, wantUpdate: true},
		{name: "live claim elsewhere", stored: live, claim: claim, wantErr: ErrClaimedElsewhere},
		{name: "expired claim: taken over", stored: expired, claim: claim, wantUpdate: true},
		{name: "legacy done: duplicate", stored: legacyDone, claim: claim, wantDup: &legacyDone},
		{name: "legacy dead-lettered, replayed elsewhere: claimed again", stored: legacyDead,
			claim: Claim{CommandID: "c1", Digest: testDigest, Shard: "shardId-3", Sequence: "99"}, wantUpdate: true},
		{name: "legacy expired claim: taken over", stored: legacyExpired, claim: claim, wantUpdate: true},
		{name: "expired claim, taken by another first", stored: expired, claim: claim, wantUpdate: true,
			update: func(*testing.T, *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				return nil, conditionFailed()
			},
			wantErr: ErrClaimedElsewhere},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.OnPutItem = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return nil, conditionFailed() }
			f.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				if !aws.ToBool(in.ConsistentRead) {
					t.Error("GetItem is not a consistent read")
				}
				return &dynamodb.GetItemOutput{Item: item(tc.stored, "seen-token")}, nil
			}
			updates := 0
			f.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				updates++
				cond := aws.ToString(in.ConditionExpression)
				if !strings.Contains(cond, "#claimToken = :seenToken") || in.ExpressionAttributeValues[":seenToken"].(*types.AttributeValueMemberS).Value != "seen-token" {
					t.Errorf("takeover not fenced on the token read: %s", cond)
				}
				if tc.stored.Status == StatusInProgress && !strings.Contains(cond, "#claimedUntil <= :nowMillis") {
					t.Errorf("takeover of a claim not fenced on its expiry: %s", cond)
				}
				if !strings.Contains(cond, "(attribute_not_exists(#digest) OR #digest = :digest)") {
					t.Errorf("takeover not fenced on the digest: %s", cond)
				}
				if v, ok := in.ExpressionAttributeValues[":v_digest"].(*types.AttributeValueMemberS); !ok || v.Value != testDigest {
					t.Errorf("takeover does not record the digest: %v", in.ExpressionAttributeValues[":v_digest"])
				}
				if tc.update != nil {
					return tc.update(t, in)
				}
				return &dynamodb.UpdateItemOutput{Attributes: map[string]types.AttributeValue{
					attrAttempts: n(int64(tc.stored.Attempts + 1)), attrFirstAttempt: s(formatTime(tc.stored.FirstAttempt)),
				}}, nil
			}
			tbl := newUnitTable(t, f, clk, nil)
			err := tbl.Claim(t.Context(), tc.claim)
			var dup *DuplicateError
			switch {
			case tc.wantDup != nil:
				if !errors.As(err, &dup) || !errors.Is(err, ErrDuplicate) {
					t.Fatalf("Claim = %v, want a *DuplicateError", err)
				}
				if diff := cmp.Diff(tc.wantDup, dup.Record); diff != "" {
					t.Errorf("duplicate's record (-want +got):\n%s", diff)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Claim = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("Claim: %v", err)
			}
			if (updates > 0) != tc.wantUpdate {
				t.Errorf("%d takeover writes, want some: %v", updates, tc.wantUpdate)
			}
			if tc.wantErr == nil && tc.wantDup == nil {
				tbl.mu.Lock()
				st := tbl.held[ident("c1")]
				tbl.mu.Unlock()
				if st == nil || st.attempts != tc.stored.Attempts+1 {
					t.Errorf("held claim %+v, want attempts %d", st, tc.stored.Attempts+1)
				}
			} else if _, _, ok := tbl.token(ident("c1")); ok {
				t.Error("a refused claim is still held")
			}
		})
	}
}

func TestClaimErrors(t *testing.T) {
	f := newFake(t)
	f.OnPutItem = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		return nil, apiErr("ProvisionedThroughputExceededException")
	}
	tbl := newUnitTable(t, f, newClock(), nil)
	err := tbl.Claim(t.Context(), Claim{CommandID: "c1", Digest: testDigest})
	if err == nil || errors.Is(err, ErrClaimedElsewhere) || !strings.Contains(err.Error(), "ProvisionedThroughputExceeded") {
		t.Fatalf("Claim = %v, want the DynamoDB error", err)
	}
	// A failed claim leaves nothing held: the next try reaches DynamoDB.
	f.OnPutItem = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return &dynamodb.PutItemOutput{}, nil }
	if err := tbl.Claim(t.Context(), Claim{CommandID: "c1", Digest: testDigest}); err != nil {
		t.Fatalf("Claim after a failure: %v", err)
	}

	if err := tbl.Claim(t.Context(), Claim{}); err == nil {
		t.Error("Claim without a command id succeeded")
	}
	noWorker := New(newFake(t), Config{TableName: "t-commands"})
	if err := noWorker.Claim(t.Context(), Claim{CommandID: "c", Digest: testDigest}); err == nil {
		t.Error("Claim without a worker id succeeded")
	}

	f.OnPutItem = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return nil, conditionFailed() }
	f.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		return &dynamodb.GetItemOutput{Item: item(Record{CommandID: "c2", Status: "weird"}, "x")}, nil
	}
	if err := tbl.Claim(t.Context(), Claim{CommandID: "c2", Digest: testDigest}); err == nil || !strings.Contains(err.Error(), `unknown status "weird"`) {
		t.Errorf("Claim of an unreadable item = %v", err)
	}
}

// holding returns a table that holds a claim on c1 with the given token.
func holding(t *testing.T, f *ddbfake.DB, clk *testclock.Clock) (*Table, string) {
	t.Helper()
	var tok string
	f.OnPutItem = func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		tok, _ = str(in.Item, attrToken)
		return &dynamodb.PutItemOutput{}, nil
	}
	tbl := newUnitTable(t, f, clk, nil)
	if err := tbl.Claim(t.Context(), Claim{CommandID: "c1", Digest: testDigest}); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return tbl, tok
}

func TestExtendFinishRelease(t *testing.T) {
	clk := newClock()
	start := clk.Now()
	f := newFake(t)
	tbl, tok := holding(t, f, clk)

	var last *dynamodb.UpdateItemInput
	f.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		last = in
		if got := in.ExpressionAttributeValues[":token"].(*types.AttributeValueMemberS).Value; got != tok {
			t.Errorf("write fenced on token %q, want %q", got, tok)
		}
		return &dynamodb.UpdateItemOutput{Attributes: map[string]types.AttributeValue{attrAttempts: n(2)}}, nil
	}
	clk.Add(10 * time.Second)
	if err := tbl.Extend(t.Context(), ident("c1")); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	wantUntil := clk.Now().Add(time.Minute).UnixMilli()
	if got := last.ExpressionAttributeValues[":v_claimedUntil"].(*types.AttributeValueMemberN).Value; got != n(wantUntil).(*types.AttributeValueMemberN).Value {
		t.Errorf("extended until %s, want %d", got, wantUntil)
	}

	// Finish merges the caller's counts with the table's: the larger count,
	// the earlier first and the later last attempt.
	clk.Add(time.Second)
	callerLast := clk.Now()
	err := tbl.Finish(t.Context(), ident("c1"), Final{
		Verdict: verdict.DeadLettered, Attempts: 1, FirstAttempt: start.Add(time.Second), LastAttempt: callerLast, Reason: "failed_permanently",
	})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	vals := last.ExpressionAttributeValues
	got := map[string]string{
		"status":   vals[":v_status"].(*types.AttributeValueMemberS).Value,
		"verdict":  vals[":v_verdict"].(*types.AttributeValueMemberS).Value,
		"reason":   vals[":v_reason"].(*types.AttributeValueMemberS).Value,
		"attempts": vals[":v_attempts"].(*types.AttributeValueMemberN).Value,
		"first":    vals[":v_firstAttempt"].(*types.AttributeValueMemberS).Value,
		"last":     vals[":v_lastAttempt"].(*types.AttributeValueMemberS).Value,
		"expires":  vals[":v_expiresAt"].(*types.AttributeValueMemberN).Value,
	}
	want := map[string]string{
		"status": StatusDone, "verdict": string(verdict.DeadLettered), "reason": "failed_permanently", "attempts": "2",
		"first": formatTime(start), "last": formatTime(callerLast),
		"expires": n(clk.Now().Add(48 * time.Hour).Unix()).(*types.AttributeValueMemberN).Value,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Finish wrote (-want +got):\n%s", diff)
	}
	if !strings.Contains(aws.ToString(last.UpdateExpression), "REMOVE #claimedUntil") {
		t.Errorf("Finish keeps the claim expiry: %s", aws.ToString(last.UpdateExpression))
	}
	// The claim is over.
	if err := tbl.Extend(t.Context(), ident("c1")); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Extend after Finish = %v, want ErrNotClaimed", err)
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Finish after Finish = %v, want ErrNotClaimed", err)
	}
	if err := tbl.Release(t.Context(), ident("c1")); err != nil {
		t.Errorf("Release of nothing = %v", err)
	}
}

func TestFenceLost(t *testing.T) {
	for _, op := range []string{"Extend", "Finish", "Release"} {
		t.Run(op, func(t *testing.T) {
			f := newFake(t)
			tbl, _ := holding(t, f, newClock())
			f.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, conditionFailed() }
			// Finish reads what failed its fence: another worker's claim.
			f.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				return &dynamodb.GetItemOutput{Item: item(Record{CommandID: "c1", Digest: testDigest, Status: StatusInProgress, Owner: "worker-b"}, "their-token")}, nil
			}
			var err error
			switch op {
			case "Extend":
				err = tbl.Extend(t.Context(), ident("c1"))
			case "Finish":
				err = tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed})
			case "Release":
				// The goal, not holding the claim, is reached either way.
				if err := tbl.Release(t.Context(), ident("c1")); err != nil {
					t.Fatalf("Release = %v, want nil", err)
				}
			}
			if op != "Release" && !errors.Is(err, ErrClaimedElsewhere) {
				t.Fatalf("%s = %v, want ErrClaimedElsewhere", op, err)
			}
			if _, _, ok := tbl.token(ident("c1")); ok {
				t.Errorf("claim still held after %s lost it", op)
			}
		})
	}
}

func TestFinishTransientKeepsClaim(t *testing.T) {
	f := newFake(t)
	tbl, _ := holding(t, f, newClock())
	f.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return nil, apiErr("InternalServerError")
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); err == nil || errors.Is(err, ErrClaimedElsewhere) {
		t.Fatalf("Finish = %v, want the DynamoDB error", err)
	}
	if _, _, ok := tbl.token(ident("c1")); !ok {
		t.Fatal("a transient Finish failure dropped the claim")
	}
	f.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return &dynamodb.UpdateItemOutput{}, nil
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish again: %v", err)
	}
	// Release forgets the claim even when its write fails.
	tbl2, _ := holding(t, newFake(t), newClock())
	tbl2.db.(*ddbfake.DB).OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return nil, apiErr("InternalServerError")
	}
	if err := tbl2.Release(t.Context(), ident("c1")); err == nil {
		t.Error("Release hid the DynamoDB error")
	}
	if _, _, ok := tbl2.token(ident("c1")); ok {
		t.Error("claim still held after Release")
	}
}

// A Finish whose fenced write fails reads the item to tell an earlier
// Finish of this claim, landed though its answer was lost, from a claim
// taken over: only an item done under this claim's token is the former.
func TestFinishAfterFenceFailed(t *testing.T) {
	done := func(tok, digest string) map[string]types.AttributeValue {
		return item(Record{CommandID: "c1", Digest: digest, Status: StatusDone, Verdict: verdict.Executed, Owner: "worker-a"}, tok)
	}
	for _, tc := range []struct {
		name  string
		found func(ours string) map[string]types.AttributeValue
		want  error
	}{
		{"done under our token", func(ours string) map[string]types.AttributeValue { return done(ours, testDigest) }, nil},
		{"done under our token, no digest", func(ours string) map[string]types.AttributeValue { return done(ours, "") }, nil},
		{"done under another token", func(string) map[string]types.AttributeValue { return done("their-token", testDigest) }, ErrClaimedElsewhere},
		{"claimed by another", func(string) map[string]types.AttributeValue {
			return item(Record{CommandID: "c1", Digest: testDigest, Status: StatusInProgress, Owner: "worker-b"}, "their-token")
		}, ErrClaimedElsewhere},
		{"another command under our token", func(ours string) map[string]types.AttributeValue { return done(ours, "d2") }, ErrClaimedElsewhere},
		{"gone", func(string) map[string]types.AttributeValue { return nil }, ErrClaimedElsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			tbl, tok := holding(t, f, newClock())
			f.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, conditionFailed() }
			f.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				if k := in.Key[AttrCommandID].(*types.AttributeValueMemberS).Value; k != "c1" {
					t.Errorf("read item %q, want the claimed one", k)
				}
				return &dynamodb.GetItemOutput{Item: tc.found(tok)}, nil
			}
			err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Finish = %v, want %v", err, tc.want)
			}
			if _, _, ok := tbl.token(ident("c1")); ok {
				t.Error("claim still held after Finish learnt its fate")
			}
			if got, want := f.Ops(), []string{"PutItem", "UpdateItem", "GetItem"}; !slices.Equal(got, want) {
				t.Errorf("calls %v, want %v", got, want)
			}
		})
	}
}

// A Finish whose answer is lost, the write having landed, and then called
// again is recorded, not taken for a claim taken over.
func TestFinishLostAnswerThenRetried(t *testing.T) {
	f := newFake(t)
	tbl, tok := holding(t, f, newClock())
	var stored map[string]types.AttributeValue
	f.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		if stored != nil {
			return nil, conditionFailed()
		}
		stored = item(Record{CommandID: "c1", Digest: testDigest, Status: StatusDone, Verdict: verdict.Executed, Owner: "worker-a"}, tok)
		return nil, errors.New("read tcp 127.0.0.1: i/o timeout")
	}
	f.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		return &dynamodb.GetItemOutput{Item: stored}, nil
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); err == nil || errors.Is(err, ErrClaimedElsewhere) {
		t.Fatalf("first Finish = %v, want the lost answer's error", err)
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish again = %v, want nil: the first one landed", err)
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Finish after the recorded one = %v, want ErrNotClaimed", err)
	}
}

// A read that fails after the fence did leaves the claim held: Finish is
// called again, and learns then.
func TestFinishFenceFailedReadFails(t *testing.T) {
	f := newFake(t)
	tbl, tok := holding(t, f, newClock())
	f.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, conditionFailed() }
	f.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		return nil, apiErr("InternalServerError")
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); err == nil || errors.Is(err, ErrClaimedElsewhere) {
		t.Fatalf("Finish = %v, want the read's error", err)
	}
	if _, _, ok := tbl.token(ident("c1")); !ok {
		t.Fatal("a failed read dropped the claim")
	}
	f.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		return &dynamodb.GetItemOutput{Item: item(Record{CommandID: "c1", Digest: testDigest, Status: StatusDone, Verdict: verdict.Executed}, tok)}, nil
	}
	if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish again = %v, want nil", err)
	}
}

func TestFinishRejectsUnknownVerdict(t *testing.T) {
	f := newFake(t)
	tbl, _ := holding(t, f, newClock())
	for _, v := range []verdict.Outcome{"", "duplicate", "EXECUTED"} {
		if err := tbl.Finish(t.Context(), ident("c1"), Final{Verdict: v}); err == nil || !strings.Contains(err.Error(), "unknown verdict") {
			t.Errorf("Finish(%q) = %v", v, err)
		}
	}
}

func TestGet(t *testing.T) {
	f := newFake(t)
	f.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		if in.Key[AttrCommandID].(*types.AttributeValueMemberS).Value == "there" {
			return &dynamodb.GetItemOutput{Item: item(Record{CommandID: "there", Status: StatusDone, Verdict: verdict.Executed, Attempts: 1}, "t")}, nil
		}
		return &dynamodb.GetItemOutput{}, nil
	}
	tbl := newUnitTable(t, f, newClock(), nil)
	rec, err := tbl.Get(t.Context(), "there")
	if err != nil || rec.Verdict != verdict.Executed {
		t.Errorf("Get = %+v, %v", rec, err)
	}
	if _, err := tbl.Get(t.Context(), "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing command = %v, want ErrNotFound", err)
	}
}

// A command whose id's item holds another digest: the conflict is listed on
// that item (fenced on its digest) before its own item is created, and only
// the creation is reported. Once listed, it is not listed again.
func TestClaimConflict(t *testing.T) {
	clk := newClock()
	other := Record{CommandID: "c1", Digest: "d-other", Schema: "iglu:a/other/jsonschema/1-0-0", Status: StatusDone, Verdict: verdict.Executed, Attempts: 1}
	for _, listed := range []bool{false, true} {
		t.Run(fmt.Sprint("listed=", listed), func(t *testing.T) {
			stored := other
			if listed {
				stored.Conflicts = []string{testDigest}
			}
			f := newFake(t)
			var keys []string
			f.OnPutItem = func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
				key, _ := str(in.Item, AttrCommandID)
				keys = append(keys, "put "+key)
				if key == "c1" {
					return nil, conditionFailed()
				}
				if d, _ := str(in.Item, attrDigest); d != testDigest {
					t.Errorf("conflict item has digest %q", d)
				}
				return &dynamodb.PutItemOutput{}, nil
			}
			f.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				keys = append(keys, "get "+in.Key[AttrCommandID].(*types.AttributeValueMemberS).Value)
				return &dynamodb.GetItemOutput{Item: item(stored, "tok")}, nil
			}
			f.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				keys = append(keys, "update "+in.Key[AttrCommandID].(*types.AttributeValueMemberS).Value)
				if got := aws.ToString(in.UpdateExpression); !strings.Contains(got, "ADD #conflicts :v_conflicts") {
					t.Errorf("update %q does not add to the conflicts set", got)
				}
				if got := aws.ToString(in.ConditionExpression); got != "#digest = :seenDigest" ||
					in.ExpressionAttributeValues[":seenDigest"].(*types.AttributeValueMemberS).Value != "d-other" {
					t.Errorf("conflict listing not fenced on the digest read: %s", got)
				}
				return &dynamodb.UpdateItemOutput{}, nil
			}
			tbl := newUnitTable(t, f, clk, nil)
			var got []Conflict
			tbl.cfg.OnConflict = func(c Conflict) { got = append(got, c) }
			c := Claim{CommandID: "c1", Digest: testDigest, Schema: "iglu:a/mine/jsonschema/1-0-0"}
			if err := tbl.Claim(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			want := []string{"put c1", "get c1", "update c1", "put c1#" + testDigest}
			if listed {
				want = []string{"put c1", "get c1", "put c1#" + testDigest}
			}
			if !slices.Equal(keys, want) {
				t.Errorf("requests %v, want %v", keys, want)
			}
			if len(got) != 1 || got[0].Claim != c || got[0].Other.Schema != other.Schema {
				t.Errorf("conflicts reported %+v", got)
			}
			// Finish writes the command's own item.
			keys = nil
			f.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				keys = append(keys, "update "+in.Key[AttrCommandID].(*types.AttributeValueMemberS).Value)
				return &dynamodb.UpdateItemOutput{}, nil
			}
			if err := tbl.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys, []string{"update c1#" + testDigest}) {
				t.Errorf("Finish wrote %v", keys)
			}
		})
	}
}

func TestClaimRequiresDigest(t *testing.T) {
	tbl := newUnitTable(t, newFake(t), newClock(), nil)
	if err := tbl.Claim(t.Context(), Claim{CommandID: "c1"}); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("Claim without a digest = %v", err)
	}
}
