package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	saunakinesis "github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
)

func leasesCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "leases", "", "Print an observer's lease table: per shard its owner, checkpoint, lag behind the\ntip of the stream and any pending handoff, then the live workers. The table,\nstream, region and keys come from the observer's config file; AWS endpoints from\nthe usual AWS variables (AWS_ENDPOINT_URL_DYNAMODB, ...).")
	cfgFile := fs.String("observer-config", "", "observer config file (required)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *cfgFile == "" || fs.NArg() != 0 {
		fmt.Fprintln(env.stderr, "sauna leases: give --observer-config and no arguments")
		fs.Usage()
		return 2
	}
	c, code := readObserverConfig(env.stderr, "leases", *cfgFile)
	if code != 0 {
		return code
	}
	awsCfg, err := saunakinesis.LoadAWS(ctx, c.Region, c.AccessKeyID, c.SecretAccessKey)
	if err != nil {
		fmt.Fprintln(env.stderr, "sauna leases: aws config:", err)
		return 1
	}
	rows, workers, err := leases.ReadTable(ctx, saunakinesis.NewDynamoDBClient(awsCfg), c.ID)
	var missing *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missing):
		fmt.Fprintf(env.stderr, "sauna leases: lease table %s does not exist (in region %s): the observer never ran\n", c.ID, awsCfg.Region)
		return 1
	case err != nil:
		fmt.Fprintln(env.stderr, "sauna leases:", err)
		return 1
	}
	kin := saunakinesis.NewKinesisClient(awsCfg)
	w := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SHARD\tOWNER\tCHECKPOINT\tLAG\tHANDOFF")
	for _, l := range rows {
		owner := l.Owner
		if owner == "" {
			owner = "-"
		} else if !l.Live {
			owner += " (expired)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.Shard, owner, orDash(l.Checkpoint), lag(ctx, kin, c.StreamName, l), orDash(l.HandoffTo))
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	fmt.Fprintf(env.stdout, "\n%s\n", counted(len(workers), "live worker"))
	for _, wk := range workers {
		fmt.Fprintln(env.stdout, "  "+wk)
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lag is how far the shard's checkpoint is behind the tip of the stream, by
// the MillisBehindLatest of one read just after it; "-" when it has none
// (not started, or finished) and "?" when the read fails.
func lag(ctx context.Context, kin *kinesis.Client, stream string, l leases.LeaseInfo) string {
	if l.Checkpoint == "" || l.Checkpoint == "SHARD_END" {
		return "-"
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	it, err := kin.GetShardIterator(cctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: aws.String(l.Shard),
		ShardIteratorType: kintypes.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: aws.String(l.Checkpoint),
	})
	if err != nil {
		return "?"
	}
	out, err := kin.GetRecords(cctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(1)})
	if err != nil || out.MillisBehindLatest == nil {
		return "?"
	}
	return (time.Duration(*out.MillisBehindLatest) * time.Millisecond).String()
}
