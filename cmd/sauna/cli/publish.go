package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	saunakinesis "github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/responders"
)

func publishCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "publish", "FILE...", "Validate each command (one JSON command per file, or several in a row; '-' reads\nstdin) and put it on the stream as one record. A command is a full record: the\ncommand/1-0-0 wrapper holding an envelope and the inner command (see README,\nCommands). Prints one line per record: file, commandId, shard and sequence\nnumber, tab-separated. AWS credentials, region and endpoints come from the\nusual AWS variables and files (AWS_REGION, AWS_ENDPOINT_URL_KINESIS, ...).")
	stream := fs.String("stream", "", "Kinesis stream name (required)")
	key := fs.String("partition-key", "", "partition key (default: each command's commandId)")
	region := fs.String("region", "", "AWS region (default: from the AWS environment)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *stream == "" || fs.NArg() == 0 {
		return usageError(fs, "--stream and at least one FILE are required")
	}
	type record struct {
		source string
		data   []byte
		cmd    *responders.Command
	}
	var recs []record
	failed := false
	for _, name := range fs.Args() {
		var content []byte
		var err error
		if name == "-" {
			content, err = io.ReadAll(env.stdin)
			name = "stdin"
		} else {
			content, err = os.ReadFile(name)
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "sauna publish: %s: %v\n", name, err)
			failed = true
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(content))
		for i := 1; ; i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				fmt.Fprintf(env.stderr, "sauna publish: %s: command %d: invalid JSON: %v\n", name, i, err)
				failed = true
				break
			}
			src := name
			if i > 1 || dec.More() {
				src = fmt.Sprintf("%s#%d", name, i)
			}
			data := compact(raw)
			cmd, err := responders.Decode(data)
			if err != nil {
				fmt.Fprintf(env.stderr, "sauna publish: %s: %v\n", src, err)
				failed = true
				continue
			}
			if cmd.Expired(time.Now()) {
				fmt.Fprintf(env.stderr, "sauna publish: %s: warning: command %s has already expired; observers will reject it\n", src, cmd.ID)
			}
			recs = append(recs, record{source: src, data: data, cmd: cmd})
		}
	}
	if failed {
		fmt.Fprintln(env.stderr, "sauna publish: nothing published: fix the commands above first")
		return 1
	}
	awsCfg, err := saunakinesis.LoadAWS(ctx, *region, "", "")
	if err != nil {
		fmt.Fprintln(env.stderr, "sauna publish: aws config:", err)
		return 1
	}
	if awsCfg.Region == "" {
		fmt.Fprintln(env.stderr, "sauna publish: no AWS region: set --region or AWS_REGION")
		return 2
	}
	client := saunakinesis.NewKinesisClient(awsCfg)
	for _, r := range recs {
		pk := *key
		if pk == "" {
			pk = r.cmd.ID
		}
		out, err := client.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName:   stream,
			PartitionKey: aws.String(pk),
			Data:         r.data,
		})
		if err != nil {
			fmt.Fprintf(env.stderr, "sauna publish: %s: put on stream %s: %v\n", r.source, *stream, err)
			if errors.Is(err, context.Canceled) {
				return 1
			}
			failed = true
			continue
		}
		fmt.Fprintf(env.stdout, "%s\t%s\t%s\t%s\n", r.source, r.cmd.ID, aws.ToString(out.ShardId), aws.ToString(out.SequenceNumber))
	}
	if failed {
		return 1
	}
	return 0
}

// compact puts a command on one line, as producers usually send it; the
// content is unchanged.
func compact(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}
