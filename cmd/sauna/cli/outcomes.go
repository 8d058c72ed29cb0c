package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	saunakinesis "github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// searchStatuses are the values of --status.
var searchStatuses = []string{
	string(verdict.Executed), string(verdict.Rejected), string(verdict.Failed),
	string(verdict.DeadLettered), outcomes.StatusInProgress,
}

func outcomesCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "outcomes", "", "Search the outcomes an observer recorded: one line per command whose first\n"+
		"attempt (or rejection) falls in [--since, --until), oldest first, with its\n"+
		"status (executed, rejected, failed, dead_lettered, in_progress), responder,\n"+
		"schema, attempts and reason. JSON lines when stdout is not a terminal, an\n"+
		"aligned table when it is. The search queries the outcomes table's byDay\n"+
		"index, one DynamoDB Query per day searched; it never scans the table.\n"+
		"Times are RFC 3339 or a duration ago (15m, 2h).\n\n"+
		"example: what failed at PagerDuty between 14:00 and 14:20 UTC on 4 May 2026:\n"+
		"  sauna outcomes --observer-config conf/observer.json --since 2026-05-04T14:00:00Z \\\n"+
		"    --until 2026-05-04T14:20:00Z --responder pagerduty --status failed,dead_lettered,rejected")
	cfgFile := fs.String("observer-config", "", "observer config file: its id, outcomes table, region and AWS keys are used (required)")
	since := fs.String("since", "24h", "first attempt at or after this time")
	until := fs.String("until", "", "first attempt before this time (default: now)")
	var statuses listFlag
	fs.Var(&statuses, "status", "only these statuses, comma-separated: executed, rejected, failed, dead_lettered, in_progress")
	responder := fs.String("responder", "", "only commands served by this responder module (slack, pagerduty, sendgrid, webhook, ...)")
	schema := fs.String("schema", "", "only commands whose schema URI starts with this, e.g. com.pagerduty.sauna.commands/")
	limit := fs.Int("limit", 0, "stop after this many commands (0: no limit)")
	format := fs.String("format", "", "json or table (default: table on a terminal, else json)")
	region := fs.String("region", "", "AWS region (default: the observer config's, or from the AWS environment)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	fail := failer(fs)
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q (search by flags; to look up ids use sauna outcome)", fs.Arg(0))
	}
	if *cfgFile == "" {
		return fail(2, "--observer-config is required")
	}
	for _, st := range statuses {
		if !slices.Contains(searchStatuses, st) {
			return fail(2, "--status: unknown status %q; want one of %v", st, searchStatuses)
		}
	}
	if *limit < 0 {
		return fail(2, "--limit must not be negative")
	}
	switch *format {
	case "":
		*format = "json"
		if isTerminal(env.stdout) {
			*format = "table"
		}
	case "json", "table":
	default:
		return fail(2, "--format: want json or table, got %q", *format)
	}
	now := time.Now()
	from, to, err := timeWindow(*since, *until, now)
	if err != nil {
		return fail(2, "%v", err)
	}
	if to.IsZero() {
		to = now
	}
	if !from.Before(to) {
		return fail(2, "--since must be before --until")
	}
	c, code := readObserverConfig(env.stderr, "outcomes", *cfgFile)
	if code != 0 {
		return code
	}
	if *region == "" {
		*region = c.Region
	}
	awsCfg, err := saunakinesis.LoadAWS(ctx, *region, c.AccessKeyID, c.SecretAccessKey)
	if err != nil {
		return fail(1, "aws config: %v", err)
	}
	if awsCfg.Region == "" {
		return fail(2, "no AWS region: set --region or AWS_REGION")
	}
	tbl := outcomes.New(saunakinesis.NewDynamoDBClient(awsCfg), outcomes.Config{
		TableName: c.Idempotency.TableName,
		Observer:  c.ID,
		Logger:    slog.New(slog.DiscardHandler),
	})
	out := newOutcomePrinter(env.stdout, *format)
	err = tbl.Search(ctx, outcomes.Search{
		Since: from, Until: to, Outcomes: statuses, Responder: *responder, Schema: *schema, Limit: *limit,
	}, out.print)
	if ferr := out.flush(); err == nil {
		err = ferr
	}
	var missingTable *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missingTable):
		return fail(1, "table %s does not exist (in region %s)", c.Idempotency.TableName, awsCfg.Region)
	case err != nil:
		return fail(1, "%v", err)
	}
	if !c.Idempotency.Enabled {
		fmt.Fprintf(env.stderr, "sauna outcomes: note: idempotency is disabled in %s; table %s holds outcomes only from when it was on\n", *cfgFile, c.Idempotency.TableName)
	}
	fmt.Fprintf(env.stderr, "sauna outcomes: %s\n", counted(out.n, "command"))
	return 0
}

// outcomeLine is one search result as printed.
type outcomeLine struct {
	CommandID    string `json:"commandId"`
	Status       string `json:"status"`
	Responder    string `json:"responder"`
	Schema       string `json:"schema"`
	Attempts     int    `json:"attempts"`
	Reason       string `json:"reason"`
	FirstAttempt string `json:"firstAttempt"`
	LastAttempt  string `json:"lastAttempt"`
}

type outcomePrinter struct {
	json *json.Encoder
	tab  *tabwriter.Writer
	n    int
}

func newOutcomePrinter(w io.Writer, format string) *outcomePrinter {
	if format == "json" {
		return &outcomePrinter{json: json.NewEncoder(w)}
	}
	p := &outcomePrinter{tab: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	fmt.Fprintln(p.tab, "COMMAND ID\tSTATUS\tRESPONDER\tATTEMPTS\tFIRST ATTEMPT\tLAST ATTEMPT\tSCHEMA\tREASON")
	return p
}

func (p *outcomePrinter) print(r *outcomes.Record) error {
	p.n++
	l := outcomeLine{
		CommandID: r.CommandID, Status: r.Outcome(), Responder: r.Responder, Schema: r.Schema,
		Attempts: r.Attempts, Reason: r.Reason, FirstAttempt: showTime(r.FirstAttempt), LastAttempt: showTime(r.LastAttempt),
	}
	if p.json != nil {
		return p.json.Encode(l)
	}
	_, err := fmt.Fprintf(p.tab, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", l.CommandID, l.Status, orNone(l.Responder), l.Attempts,
		orNone(l.FirstAttempt), orNone(l.LastAttempt), orNone(l.Schema), orNone(oneLineText(l.Reason)))
	return err
}

func (p *outcomePrinter) flush() error {
	if p.tab != nil {
		return p.tab.Flush()
	}
	return nil
}

func oneLineText(s string) string {
	b := []rune(s)
	for i, r := range b {
		if r == '\n' || r == '\t' || r == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}
