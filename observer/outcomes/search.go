package outcomes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/verdict"
)

// Outcome is what became of the command: its verdict once done, else its
// status (in_progress).
func (r *Record) Outcome() string {
	if r.Status == StatusDone && r.Verdict != "" {
		return string(r.Verdict)
	}
	return r.Status
}

// reopenable verdicts never ran to success, so a later delivery of the same
// command from another record may run it.
func reopenable(v verdict.Outcome) bool {
	return v == verdict.DeadLettered || v == verdict.Rejected
}

// searchDay is the IndexByDay hash key of an item first attempted at ts.
func (t *Table) searchDay(ts time.Time) string {
	return t.cfg.Observer + "#" + ts.UTC().Format(time.DateOnly)
}

func (t *Table) indexes() []ddbtable.Index {
	return []ddbtable.Index{{Name: IndexByDay, HashKey: AttrSearchDay, RangeKey: attrFirstAttempt}}
}

// Rejection is a command refused before any responder ran.
type Rejection struct {
	CommandID, Shard, Sequence string
	Responder, Schema          string // empty when unknown
	Reason                     string // e.g. "no_responder: ..."; never secrets
}

// Reject records a rejected command (verdict rejected, no attempts) under its
// bare commandId, without a digest (a rejected command may not have one), so
// that `sauna outcome` and Search find it. An id that already has an item
// keeps it: that is a command that ran, runs, or failed, and the rejected
// record was another copy of it. Rejection does not make a command final: a
// later delivery of it from another record (after the config was fixed) is
// claimed, takes the item over with its digest, and runs.
func (t *Table) Reject(ctx context.Context, r Rejection) error {
	if r.CommandID == "" {
		return errors.New("outcomes: reject: empty command id")
	}
	now := t.now()
	var u ddbtable.Update
	u.Set(attrStatus, s(StatusDone))
	u.Set(attrVerdict, s(string(verdict.Rejected)))
	u.SetOrRemove(attrReason, r.Reason)
	u.SetExpr(attrAttempts, "if_not_exists(%s, %s)", u.Name(attrAttempts), u.Value("zero", n(0)))
	u.SetExpr(attrFirstAttempt, "if_not_exists(%s, %s)", u.Name(attrFirstAttempt), u.Value("now", s(formatTime(now))))
	u.SetExpr(AttrSearchDay, "if_not_exists(%s, %s)", u.Name(AttrSearchDay), u.Value("day", s(t.searchDay(now))))
	u.Set(attrLastAttempt, s(formatTime(now)))
	u.Set(AttrExpiresAt, n(now.Add(t.cfg.Retention).Unix()))
	u.Remove(attrClaimedUntil)
	for attr, v := range map[string]string{
		attrObserver: t.cfg.Observer, attrShard: r.Shard, attrSequence: r.Sequence,
		attrResponder: r.Responder, attrSchema: r.Schema,
	} {
		if v != "" {
			u.Set(attr, s(v))
		}
	}
	// Only a new item, or one that is a rejection already: any other item
	// is a command (maybe with another digest) whose outcome stays.
	cond := "attribute_not_exists(" + u.Name(AttrCommandID) + ") OR (" +
		u.Name(attrStatus) + " = " + u.Value("done", s(StatusDone)) + " AND " +
		u.Name(attrVerdict) + " = " + u.Value("rejected", s(string(verdict.Rejected))) + ")"
	_, err := t.updateItem(ctx, r.CommandID, &u, cond, types.ReturnValueNone)
	switch {
	case err == nil:
		return nil
	case isConditionFailed(err):
		t.log.Info("rejected copy of a command already recorded; its outcome is kept", "command_id", r.CommandID)
		return nil
	}
	return fmt.Errorf("outcomes table %q: reject %s: %w", t.cfg.TableName, r.CommandID, err)
}

// Search selects outcomes by the time of their first attempt (rejection, for
// rejected commands); zero fields select everything. Since is required.
type Search struct {
	Since, Until time.Time // [Since, Until); a zero Until means now
	Outcomes     []string  // Record.Outcome() values: executed, rejected, in_progress, ...
	Responder    string    // module name
	Schema       string    // prefix of the command's Iglu URI ("iglu:" optional)
	Limit        int       // at most this many records; 0 means no limit
}

// ErrNoIndex means the table has no usable IndexByDay yet.
var ErrNoIndex = errors.New("outcomes table has no search index")

// Search calls each with the matching records of this Table's observer,
// oldest first, stopping at the first error each returns. It queries
// IndexByDay, one UTC day at a time, and never scans the table: its cost
// grows with the days searched and the items in them, not with the table.
// Items written before the index existed are not found.
func (t *Table) Search(ctx context.Context, q Search, each func(*Record) error) error {
	if q.Since.IsZero() {
		return errors.New("outcomes: search: no start time")
	}
	if q.Until.IsZero() {
		q.Until = t.now()
	}
	if !q.Since.Before(q.Until) {
		return errors.New("outcomes: search: start time is not before end time")
	}
	if err := t.checkIndex(ctx); err != nil {
		return err
	}
	var filters []string
	var e ddbtable.Expr
	if len(q.Outcomes) > 0 {
		var ors []string
		for i, o := range q.Outcomes {
			if o == StatusInProgress {
				ors = append(ors, e.Name(attrStatus)+" = "+e.Value("inProgress", s(StatusInProgress)))
				continue
			}
			ors = append(ors, "("+e.Name(attrStatus)+" = "+e.Value("done", s(StatusDone))+" AND "+
				e.Name(attrVerdict)+" = "+e.Value(fmt.Sprintf("outcome%d", i), s(o))+")")
		}
		if len(ors) == 1 {
			// DynamoDB refuses redundant parentheses.
			filters = append(filters, ors[0])
		} else {
			filters = append(filters, "("+strings.Join(ors, " OR ")+")")
		}
	}
	if q.Responder != "" {
		filters = append(filters, e.Name(attrResponder)+" = "+e.Value("responder", s(q.Responder)))
	}
	if q.Schema != "" {
		prefix := q.Schema
		if !strings.HasPrefix(prefix, "iglu:") {
			prefix = "iglu:" + prefix
		}
		filters = append(filters, "begins_with("+e.Name(attrSchema)+", "+e.Value("schema", s(prefix))+")")
	}
	keyCond := e.Name(AttrSearchDay) + " = :day AND " + e.Name(attrFirstAttempt) + " BETWEEN :from AND :to"
	from := formatTime(q.Since)
	// Stored times have milliseconds: the last one before Until.
	to := formatTime(q.Until.Add(-time.Millisecond))
	found := 0
	for day := q.Since.UTC().Truncate(24 * time.Hour); day.Before(q.Until); day = day.Add(24 * time.Hour) {
		in := &dynamodb.QueryInput{
			TableName:                aws.String(t.cfg.TableName),
			IndexName:                aws.String(IndexByDay),
			KeyConditionExpression:   aws.String(keyCond),
			ExpressionAttributeNames: e.Names,
		}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{
			":day": s(t.searchDay(day)), ":from": s(from), ":to": s(to),
		}
		for k, v := range e.Values {
			in.ExpressionAttributeValues[k] = v
		}
		if len(filters) > 0 {
			in.FilterExpression = aws.String(strings.Join(filters, " AND "))
		}
		for {
			cctx, cancel := t.callCtx(ctx)
			out, err := t.db.Query(cctx, in)
			cancel()
			if err != nil {
				return fmt.Errorf("outcomes table %q: query %s: %w", t.cfg.TableName, IndexByDay, err)
			}
			for _, item := range out.Items {
				if err := each(parseRecord(item)); err != nil {
					return err
				}
				if found++; q.Limit > 0 && found >= q.Limit {
					return nil
				}
			}
			if len(out.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return nil
}

// checkIndex turns a missing or unfinished index into ErrNoIndex with what
// to do about it, instead of DynamoDB's bare validation error.
func (t *Table) checkIndex(ctx context.Context) error {
	cctx, cancel := t.callCtx(ctx)
	out, err := t.db.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.cfg.TableName)})
	cancel()
	if err != nil {
		return fmt.Errorf("outcomes table %q: describe: %w", t.cfg.TableName, err)
	}
	switch st := ddbtable.IndexStatus(out.Table, IndexByDay); st {
	case types.IndexStatusActive:
		return nil
	case "":
		return fmt.Errorf("outcomes table %q: %w %s: start the observer (it adds the index) and search once DynamoDB has built it", t.cfg.TableName, ErrNoIndex, IndexByDay)
	default:
		return fmt.Errorf("outcomes table %q: %w: index %s is %s; search once it is ACTIVE", t.cfg.TableName, ErrNoIndex, IndexByDay, st)
	}
}
