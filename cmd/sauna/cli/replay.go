package cli

import (
	"context"
	"fmt"
	"time"

	saunakinesis "github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/observer/kinesis/deadletter"
	"github.com/sauna-io/sauna/responders"
)

func replayCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "replay", "", "Re-publish dead-lettered commands: read the dead-letter stream from its oldest\nrecord and put each matching letter's original record, under its original\npartition key, onto the target stream. Prints one line per letter, then a summary\n(on stderr). Letters dead-lettered while the replay runs are left for the next one.\nAWS credentials, region and endpoints come from the usual AWS variables and files\n(AWS_REGION, AWS_ENDPOINT_URL_KINESIS, ...).")
	from := fs.String("from", "", "dead-letter stream to read (required)")
	to := fs.String("to", "", "stream to put the commands on (required unless --dry-run)")
	reason := fs.String("reason", "", "only letters whose reason starts with this: failed_permanently, retry_budget_exhausted, rejected, rejected:invalid_json, ...")
	schema := fs.String("schema", "", "only commands whose schema URI starts with this, e.g. iglu:com.slack.sauna.commands/send_message")
	since := fs.String("since", "", "only letters dead-lettered at or after this time (RFC 3339)")
	until := fs.String("until", "", "only letters dead-lettered before this time (RFC 3339)")
	dryRun := fs.Bool("dry-run", false, "only print the letters that would be replayed")
	region := fs.String("region", "", "AWS region (default: from the AWS environment)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 || *from == "" || (*to == "" && !*dryRun) {
		return usageError(fs, "--from is required, and --to unless --dry-run; no arguments are taken")
	}
	f := deadletter.Filter{Reason: *reason, Schema: *schema}
	for _, tf := range []struct {
		flag, value string
		into        *time.Time
	}{{"--since", *since, &f.Since}, {"--until", *until, &f.Until}} {
		if tf.value == "" {
			continue
		}
		ts, err := responders.ParseTimestamp(tf.value)
		if err != nil {
			fmt.Fprintf(env.stderr, "sauna replay: %s: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q\n", tf.flag, tf.value)
			return 2
		}
		*tf.into = ts
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		fmt.Fprintln(env.stderr, "sauna replay: --since must be before --until")
		return 2
	}
	awsCfg, err := saunakinesis.LoadAWS(ctx, *region, "", "")
	if err != nil {
		fmt.Fprintln(env.stderr, "sauna replay: aws config:", err)
		return 1
	}
	if awsCfg.Region == "" {
		fmt.Fprintln(env.stderr, "sauna replay: no AWS region: set --region or AWS_REGION")
		return 2
	}
	stats, err := deadletter.Replay(ctx, saunakinesis.NewKinesisClient(awsCfg), *from, *to, f, *dryRun, env.stdout)
	if err == nil || stats.Records > 0 {
		fmt.Fprintln(env.stderr, "sauna replay:", stats)
	}
	if err != nil {
		// The package's errors already start with "replay:".
		fmt.Fprintln(env.stderr, "sauna", err)
		return 1
	}
	return 0
}
