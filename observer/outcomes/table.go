package outcomes

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/sauna-io/sauna/observer/ddbtable"
)

// Init makes sure the table exists with the expected key, is ACTIVE, and
// expires items through TTL on expiresAt. Concurrent callers are fine: the
// one whose CreateTable loses the race waits like the others. ctx bounds the
// whole call; every request has its own CallTimeout as well.
func (t *Table) Init(ctx context.Context) error {
	_, err := ddbtable.Ensure(ctx, t.db, ddbtable.Spec{
		Name:    t.cfg.TableName,
		Kind:    "outcomes table",
		HashKey: AttrCommandID,
		// e.g. the observer's lease table, or a table of another application.
		Refusal:      "not an outcomes table",
		ThrottleCost: "throttled claims hold commands back",
		Indexes:      t.indexes(),
		CallTimeout:  t.cfg.CallTimeout,
		WaitTimeout:  t.cfg.TableWaitTimeout,
		MinDelay:     t.waitMinDelay,
		MaxDelay:     t.waitMaxDelay,
		Logger:       t.log,
	})
	if err != nil {
		return err
	}
	return t.ensureTTL(ctx)
}

// ensureTTL turns TTL on for expiresAt unless it already is. Emulators that
// lack the TTL API (dynalite only describes it) are tolerated, since items
// there never need to expire; any other failure is real and surfaces, as a
// table without TTL grows for ever.
func (t *Table) ensureTTL(ctx context.Context) error {
	cctx, cancel := t.callCtx(ctx)
	out, err := t.db.DescribeTimeToLive(cctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(t.cfg.TableName)})
	cancel()
	switch {
	case unsupported(err):
		t.log.Debug("DynamoDB endpoint does not support TTL; items will not expire", "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("outcomes table %q: describe TTL: %w", t.cfg.TableName, err)
	}
	if done, err := t.ttlState(out.TimeToLiveDescription); done || err != nil {
		return err
	}
	cctx, cancel = t.callCtx(ctx)
	_, err = t.db.UpdateTimeToLive(cctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(t.cfg.TableName),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(AttrExpiresAt),
			Enabled:       aws.Bool(true),
		},
	})
	cancel()
	switch {
	case err == nil:
		t.log.Info("outcomes table TTL enabled", "attribute", AttrExpiresAt, "retention", t.cfg.Retention)
		return nil
	case unsupported(err):
		t.log.Debug("DynamoDB endpoint does not support UpdateTimeToLive; items will not expire", "err", err)
		return nil
	}
	// A concurrent starter may have enabled it in the meantime, which makes
	// DynamoDB refuse a second change; only the state that results matters.
	cctx, cancel = t.callCtx(ctx)
	again, derr := t.db.DescribeTimeToLive(cctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(t.cfg.TableName)})
	cancel()
	if derr == nil {
		if done, _ := t.ttlState(again.TimeToLiveDescription); done {
			return nil
		}
	}
	return fmt.Errorf("outcomes table %q: enable TTL on %s: %w", t.cfg.TableName, AttrExpiresAt, err)
}

// ttlState reports whether TTL needs no change. TTL on another attribute is
// the operator's choice and only warned about: DynamoDB allows one TTL
// attribute per table, and changing it is not for a consumer to decide.
func (t *Table) ttlState(d *types.TimeToLiveDescription) (bool, error) {
	if d == nil {
		return false, nil
	}
	switch d.TimeToLiveStatus {
	case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
		if name := aws.ToString(d.AttributeName); name != "" && name != AttrExpiresAt {
			t.log.Warn("outcomes table has TTL on another attribute; outcomes will not expire",
				"ttlAttribute", name, "want", AttrExpiresAt)
		}
		return true, nil
	case types.TimeToLiveStatusDisabling:
		return true, fmt.Errorf("outcomes table %q: TTL is being disabled; enable it on %s once that is done", t.cfg.TableName, AttrExpiresAt)
	}
	return false, nil
}

// unsupported recognises an endpoint that does not implement an operation.
// AWS never answers a DynamoDB TTL call this way.
func unsupported(err error) bool {
	if err == nil {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "UnknownOperationException", "NotImplementedException", "NotImplemented", "InvalidAction":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotImplemented
}
