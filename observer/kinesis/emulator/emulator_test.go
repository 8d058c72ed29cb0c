package emulator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

var validName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,128}$`)

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{"", "s", "lease table/ü", string(bytes.Repeat([]byte("x"), 300))} {
		for range 3 {
			n := emulator.UniqueName(t, prefix)
			if !validName.MatchString(n) {
				t.Errorf("UniqueName(%q) = %q: not a valid stream/table name", prefix, n)
			}
			if seen[n] {
				t.Errorf("UniqueName(%q) = %q: duplicate", prefix, n)
			}
			seen[n] = true
		}
	}
	t.Run("sub test/with spaces", func(t *testing.T) {
		n := emulator.UniqueName(t, "p")
		if !validName.MatchString(n) || seen[n] {
			t.Errorf("UniqueName in subtest = %q", n)
		}
	})
}

func TestRequireSkipsWithoutEndpoints(t *testing.T) {
	t.Setenv(emulator.EnvKinesis, "")
	t.Setenv(emulator.EnvDynamoDB, "")
	ran := false
	t.Run("inner", func(t *testing.T) {
		emulator.Require(t)
		ran = true
	})
	if ran {
		t.Fatal("Require did not skip with the endpoints unset")
	}
}

// TestKinesisRoundTrip proves the emulator and the helpers: 8 records put into
// a 4-shard stream all come back from TRIM_HORIZON, with the sequence numbers
// PutRecords returned.
func TestKinesisRoundTrip(t *testing.T) {
	env := emulator.Require(t)
	client := env.Kinesis(t)
	stream := env.NewStream(t, "rt", 4)

	recs := make([]emulator.Record, 8)
	want := map[string]string{} // sequence number -> data
	for i := range recs {
		recs[i] = emulator.Record{
			PartitionKey: fmt.Sprintf("pk-%d", i),
			Data:         fmt.Appendf(nil, "record %d", i),
		}
	}
	seqs := env.PutRecords(t, stream, recs)
	if len(seqs) != len(recs) {
		t.Fatalf("PutRecords returned %d sequence numbers, want %d", len(seqs), len(recs))
	}
	for i, s := range seqs {
		if s == "" {
			t.Fatalf("record %d: empty sequence number", i)
		}
		want[s] = string(recs[i].Data)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	shards, err := client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	if len(shards.Shards) != 4 {
		t.Fatalf("stream has %d shards, want 4", len(shards.Shards))
	}

	got := map[string]string{}
	for _, sh := range shards.Shards {
		it, err := client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName:        aws.String(stream),
			ShardId:           sh.ShardId,
			ShardIteratorType: kinesistypes.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatalf("GetShardIterator %s: %v", aws.ToString(sh.ShardId), err)
		}
		iter := it.ShardIterator
		// An open shard always returns a next iterator; stop at the first
		// empty read, which on the emulator means the shard is drained.
		for calls := 0; iter != nil; calls++ {
			if calls == 20 {
				t.Fatalf("shard %s: still returning records after %d GetRecords calls", aws.ToString(sh.ShardId), calls)
			}
			out, err := client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatalf("GetRecords %s: %v", aws.ToString(sh.ShardId), err)
			}
			for _, r := range out.Records {
				got[aws.ToString(r.SequenceNumber)] = string(r.Data)
			}
			if len(out.Records) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}

	if len(got) != len(want) {
		t.Errorf("read %d records, want %d", len(got), len(want))
	}
	for seq, data := range want {
		if got[seq] != data {
			t.Errorf("sequence %s: read %q, want %q", seq, got[seq], data)
		}
	}
}

// TestDynamoDB checks the dynalite client with a conditional write, the
// kind of call the lease table relies on.
func TestDynamoDB(t *testing.T) {
	env := emulator.Require(t)
	client := env.DynamoDB(t)
	table := emulator.UniqueName(t, "lease")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	if err := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = time.Second
	}).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second); err != nil {
		t.Fatalf("wait for table: %v", err)
	}

	put := func() error {
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:           aws.String(table),
			Item:                map[string]ddbtypes.AttributeValue{"ShardID": &ddbtypes.AttributeValueMemberS{Value: "shardId-000000000000"}},
			ConditionExpression: aws.String("attribute_not_exists(ShardID)"),
		})
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("first conditional PutItem: %v", err)
	}
	var ccf *ddbtypes.ConditionalCheckFailedException
	if err := put(); err == nil {
		t.Fatal("second conditional PutItem succeeded, want ConditionalCheckFailedException")
	} else if !errors.As(err, &ccf) {
		t.Fatalf("second conditional PutItem: %v, want ConditionalCheckFailedException", err)
	}
}

// TestCloudWatch checks that the CloudWatch client reaches moto_server with a
// protocol it understands.
func TestCloudWatch(t *testing.T) {
	env := emulator.Require(t)
	client := env.CloudWatch(t)
	ns := emulator.UniqueName(t, "ns")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	if _, err := client.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{
		Namespace: aws.String(ns),
		MetricData: []cwtypes.MetricDatum{{
			MetricName: aws.String("RecordsProcessed"),
			Value:      aws.Float64(42),
			Unit:       cwtypes.StandardUnitCount,
		}},
	}); err != nil {
		t.Fatalf("PutMetricData: %v", err)
	}
	out, err := client.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(ns)})
	if err != nil {
		t.Fatalf("ListMetrics: %v", err)
	}
	if len(out.Metrics) == 0 || aws.ToString(out.Metrics[0].MetricName) != "RecordsProcessed" {
		t.Fatalf("ListMetrics(%s) = %+v, want RecordsProcessed", ns, out.Metrics)
	}
}

// TestCloudWatchLargeBatch sends a PutMetricData body over the SDK's 10 KiB
// compression threshold, which moto cannot read gzipped.
func TestCloudWatchLargeBatch(t *testing.T) {
	env := emulator.Require(t)
	client := env.CloudWatch(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	data := make([]cwtypes.MetricDatum, 300)
	for i := range data {
		data[i] = cwtypes.MetricDatum{
			MetricName: aws.String(fmt.Sprintf("RecordsProcessed%04d", i)),
			Value:      aws.Float64(float64(i)),
			Dimensions: []cwtypes.Dimension{{Name: aws.String("ShardId"), Value: aws.String("shardId-000000000001")}},
		}
	}
	if _, err := client.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{
		Namespace:  aws.String(emulator.UniqueName(t, "ns")),
		MetricData: data,
	}); err != nil {
		t.Fatalf("PutMetricData with %d data: %v", len(data), err)
	}
}

// TestPutRecordsBatches covers the split into PutRecords calls of 500.
func TestPutRecordsBatches(t *testing.T) {
	env := emulator.Require(t)
	stream := env.NewStream(t, "batch", 1)

	recs := make([]emulator.Record, 1201)
	for i := range recs {
		recs[i] = emulator.Record{PartitionKey: "same", Data: fmt.Appendf(nil, "%d", i)}
	}
	seqs := env.PutRecords(t, stream, recs)
	if len(seqs) != len(recs) {
		t.Fatalf("got %d sequence numbers, want %d", len(seqs), len(recs))
	}
	// One shard, one partition key: sequence numbers grow in put order.
	for i := 1; i < len(seqs); i++ {
		a, b := seqs[i-1], seqs[i]
		if len(a) > len(b) || (len(a) == len(b) && a >= b) {
			t.Fatalf("sequence numbers out of order at %d: %s then %s", i, a, b)
		}
	}
}

// TestEmulatorsSurviveAbortedRequests: an SDK call cancelled while its body
// is being sent closes the connection mid-request. kinesalite and dynalite
// rethrow that as an uncaught error and die, which would fail every other
// test sharing them; scripts/emulators runs both so that they drop such a
// request and keep serving.
func TestEmulatorsSurviveAbortedRequests(t *testing.T) {
	env := emulator.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	check := map[string]func() error{
		env.KinesisURL: func() error {
			_, err := env.Kinesis(t).ListStreams(ctx, &kinesis.ListStreamsInput{})
			return err
		},
		env.DynamoDBURL: func() error {
			_, err := env.DynamoDB(t).ListTables(ctx, &dynamodb.ListTablesInput{})
			return err
		},
	}
	for endpoint, alive := range check {
		for i := range 5 {
			abortMidBody(t, endpoint)
			if err := alive(); err != nil {
				t.Fatalf("%s stopped answering after a request aborted mid-body (round %d): %v", endpoint, i, err)
			}
		}
	}
}

// abortMidBody sends a request's headers and part of its body, then ends the
// connection, and returns once the server has closed its side: by then the
// server has seen the request and its abort.
func abortMidBody(t *testing.T, endpoint string) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("endpoint %q: %v", endpoint, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "POST / HTTP/1.1\r\nHost: " + u.Host + "\r\n" +
		"Content-Type: application/x-amz-json-1.1\r\n" +
		"X-Amz-Target: Kinesis_20131202.ListStreams\r\n" +
		"Content-Length: 100\r\n\r\n{\"Limit\":"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("write to %s: %v", u.Host, err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("close write to %s: %v", u.Host, err)
	}
	// Whatever the server answers (an error status, or nothing), it closes
	// the connection once it has dealt with the incomplete request.
	_, _ = io.Copy(io.Discard, conn)
}
