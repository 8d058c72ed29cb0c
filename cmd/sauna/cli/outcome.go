package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer"
	saunakinesis "github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/observer/outcomes"
)

func outcomeCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "outcome", "COMMAND_ID...", "Print what became of each command, as recorded in the observer's outcomes table\n(status, verdict, attempts, reason, ...): every command recorded under the id, as\ndifferent commands may share one (see README, Delivery). Exits 1 if an id is not\nfound; 'sauna outcomes' searches by time instead. Give the table, or the\nobserver's config file (its table, region and keys are used). AWS credentials,\nregion and endpoints otherwise come from the usual AWS variables and files\n(AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB, ...).")
	table := fs.String("table", "", "outcomes table (the default of an observer is <observer id>-commands)")
	cfgFile := fs.String("observer-config", "", "observer config file to take the table, region and AWS keys from")
	region := fs.String("region", "", "AWS region (default: the observer config's, or from the AWS environment)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 || (*table == "") == (*cfgFile == "") {
		fmt.Fprintln(env.stderr, "sauna outcome: give one of --table and --observer-config, and at least one command id")
		fs.Usage()
		return 2
	}
	var keyID, secret string
	if *cfgFile != "" {
		c, code := readObserverConfig(env.stderr, "outcome", *cfgFile)
		if code != 0 {
			return code
		}
		*table = c.Idempotency.TableName
		if *region == "" {
			*region = c.Region
		}
		keyID, secret = c.AccessKeyID, c.SecretAccessKey
		if !c.Idempotency.Enabled {
			fmt.Fprintf(env.stderr, "sauna outcome: note: idempotency is disabled in %s; table %s holds outcomes only from when it was on\n", *cfgFile, *table)
		}
	}
	awsCfg, err := saunakinesis.LoadAWS(ctx, *region, keyID, secret)
	if err != nil {
		fmt.Fprintln(env.stderr, "sauna outcome: aws config:", err)
		return 1
	}
	if awsCfg.Region == "" {
		fmt.Fprintln(env.stderr, "sauna outcome: no AWS region: set --region or AWS_REGION")
		return 2
	}
	tbl := outcomes.New(saunakinesis.NewDynamoDBClient(awsCfg), outcomes.Config{
		TableName: *table,
		Logger:    slog.New(slog.DiscardHandler),
	})
	code, printed := 0, false
	for _, id := range fs.Args() {
		recs, err := tbl.Lookup(ctx, id)
		var missingTable *types.ResourceNotFoundException
		switch {
		case errors.Is(err, outcomes.ErrNotFound):
			fmt.Fprintf(env.stderr, "sauna outcome: %s: not found in table %s\n", id, *table)
			code = 1
			continue
		case errors.As(err, &missingTable):
			fmt.Fprintf(env.stderr, "sauna outcome: table %s does not exist (in region %s)\n", *table, awsCfg.Region)
			return 1
		case err != nil:
			fmt.Fprintln(env.stderr, "sauna outcome:", err)
			if ctx.Err() != nil {
				return 1
			}
			code = 1
			continue
		}
		for i, rec := range recs {
			if printed {
				fmt.Fprintln(env.stdout)
			}
			printRecord(env.stdout, rec, i, len(recs))
			printed = true
		}
	}
	return code
}

// readObserverConfig parses one observer config file the way the daemon does.
// Its errors start with "sauna <cmd>:".
func readObserverConfig(stderr io.Writer, cmd, file string) (saunakinesis.Config, int) {
	content, err := observer.ReadConfigFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "sauna %s: %s: %v\n", cmd, file, err)
		return saunakinesis.Config{}, 1
	}
	entry, probs := observer.ParseFile(file, content, slog.New(slog.DiscardHandler))
	if entry == nil {
		for _, p := range probs {
			fmt.Fprintf(stderr, "sauna %s: %v\n", cmd, p)
		}
		return saunakinesis.Config{}, 1
	}
	if entry.Kind != observer.KindObserver {
		fmt.Fprintf(stderr, "sauna %s: %s is a %s config, not an observer config\n", cmd, file, entry.Kind)
		return saunakinesis.Config{}, 2
	}
	return entry.Observer, 0
}

// printRecord prints the i-th of n commands recorded under one id.
func printRecord(w io.Writer, r *outcomes.Record, i, n int) {
	if n > 1 {
		fmt.Fprintf(w, "command %s (%d of %d different commands under this id)\n", r.CommandID, i+1, n)
	} else {
		fmt.Fprintf(w, "command %s\n", r.CommandID)
	}
	line := func(label, value string) { fmt.Fprintf(w, "  %-14s %s\n", label+":", orNone(value)) }
	line("status", r.Status)
	line("verdict", string(r.Verdict))
	line("observer", r.Observer)
	line("shard", r.Shard)
	line("sequence", r.Sequence)
	line("responder", r.Responder)
	line("schema", r.Schema)
	line("digest", r.Digest)
	line("attempts", fmt.Sprint(r.Attempts))
	line("first attempt", showTime(r.FirstAttempt))
	line("last attempt", showTime(r.LastAttempt))
	line("reason", r.Reason)
	line("worker", r.Owner)
	if r.Status == outcomes.StatusInProgress {
		line("claimed until", showTime(r.ClaimedUntil))
	}
	line("expires", showTime(r.ExpiresAt))
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func showTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
