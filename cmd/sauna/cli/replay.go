package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sauna-io/sauna/observer/deadletter"
	saunakinesis "github.com/sauna-io/sauna/observer/kinesis"
)

const replaySummary = `Put commands again: read a stream (the live command stream, or a dead-letter
stream, whose letters are unwrapped to their original records) and put each
selected command onto --to under its original partition key. Commands are
selected by the time they arrived in the stream read ([--since, --until): every
shard, closed parents of a reshard included, starts at --since and stops at its
first record that arrived later than --until or than the start of the replay),
and by schema, tags and dead-letter reason. Times are RFC 3339 or a duration
ago (15m, 2h).

Without --new-ids a command that already ran is skipped by the observer as a
duplicate (a dead-lettered or rejected one runs again); with it, each command
gets a new commandId and its old one in the envelope tag replayOf.
--refresh-ttl sets whenCreated to now, for commands past their time to live.

stdout: one JSON line per command put (with --dry-run, per command selected).
stderr: progress on long runs, then a summary by schema and reason. Ctrl-C stops
the replay and says how far it got. AWS credentials, region and endpoints come
from the usual AWS variables and files (AWS_REGION, AWS_ENDPOINT_URL_KINESIS, ...).

examples:
  # what went to PagerDuty between 14:00 and 14:20 UTC
  sauna replay --from commands --since 2026-05-04T14:00:00Z --until 2026-05-04T14:20:00Z \
    --schema com.pagerduty.sauna.commands/ --dry-run
  # run the ones that failed in the last hour again, after fixing the config
  sauna replay --from commands-dlq --since 1h --reason failed_permanently --to commands --new-ids`

func replayCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "replay", "", replaySummary)
	from := fs.String("from", "", "stream to read: the command stream or a dead-letter stream (required)")
	to := fs.String("to", "", "stream to put the commands on (required unless --dry-run); may be --from itself")
	since := fs.String("since", "", "only commands that arrived at or after this time (default: the oldest record)")
	until := fs.String("until", "", "only commands that arrived before this time (default: the start of the replay)")
	schema := fs.String("schema", "", "only commands whose schema URI starts with this, e.g. com.pagerduty.sauna.commands/")
	var tags repeatedFlag
	fs.Var(&tags, "tag", "only commands whose envelope has this tag, KEY=VALUE (repeatable; all must match)")
	reason := fs.String("reason", "", "only dead letters whose reason starts with this: failed_permanently, retry_budget_exhausted, rejected, rejected:no_responder, ...")
	newIDs := fs.Bool("new-ids", false, "give each command put a new commandId, the old one in the envelope tag replayOf")
	refreshTTL := fs.Bool("refresh-ttl", false, "set each command's whenCreated to now, so that one past its time to live runs")
	rate := fs.Float64("rate", 0, "at most this many puts per second (0: no limit)")
	dryRun := fs.Bool("dry-run", false, "only print the commands that would be put")
	region := fs.String("region", "", "AWS region (default: from the AWS environment)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	fail := failer(fs)
	switch {
	case fs.NArg() > 0:
		return fail(2, "unexpected argument %q", fs.Arg(0))
	case *from == "":
		return fail(2, "--from is required")
	case *to == "" && !*dryRun:
		return fail(2, "--to is required (or --dry-run)")
	case *rate < 0:
		return fail(2, "--rate must not be negative")
	}
	opts := deadletter.Options{
		From: *from, To: *to, DryRun: *dryRun, NewIDs: *newIDs, RefreshTTL: *refreshTTL, Rate: *rate,
		Out: env.stdout, Progress: env.stderr,
	}
	opts.Reason, opts.Schema = *reason, *schema
	var err error
	if opts.Since, opts.Until, err = timeWindow(*since, *until, time.Now()); err != nil {
		return fail(2, "%v", err)
	}
	for _, kv := range tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fail(2, "--tag: want KEY=VALUE, got %q", kv)
		}
		if opts.Tags == nil {
			opts.Tags = map[string]string{}
		}
		opts.Tags[k] = v
	}
	awsCfg, err := saunakinesis.LoadAWS(ctx, *region, "", "")
	if err != nil {
		return fail(1, "aws config: %v", err)
	}
	if awsCfg.Region == "" {
		return fail(2, "no AWS region: set --region or AWS_REGION")
	}
	stats, err := deadletter.Replay(ctx, saunakinesis.NewKinesisClient(awsCfg), opts)
	fmt.Fprintln(env.stderr, "sauna replay:", stats)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(env.stderr, "sauna replay: interrupted;", stats.Resume())
		return 130
	}
	// The package's errors already start with "replay:".
	fmt.Fprintln(env.stderr, "sauna", err)
	if stats.Records > 0 {
		fmt.Fprintln(env.stderr, "sauna replay:", stats.Resume())
	}
	return 1
}
