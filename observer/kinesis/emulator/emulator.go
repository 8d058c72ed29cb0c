// Package emulator gives tests of other packages ready-made AWS clients for the
// local emulators started by scripts/emulators/emulators.sh (kinesalite,
// dynalite and moto_server on 127.0.0.1).
//
// Tests find the emulators through SAUNA_TEST_KINESIS_ENDPOINT,
// SAUNA_TEST_DYNAMODB_ENDPOINT and SAUNA_TEST_CLOUDWATCH_ENDPOINT, which
// scripts/test.sh exports. When they are absent, [Require] skips the test
// instead of letting a client fall back to real AWS.
//
// The emulators have no reset, so every test names its streams and tables
// with [UniqueName]. [NewOpCounter] puts a counting proxy in front of one,
// for tests that assert which operations a client made; [NewProxy] one that
// lets a test see or hold each request.
package emulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
)

// Environment variables that carry the emulator endpoints.
const (
	EnvKinesis    = "SAUNA_TEST_KINESIS_ENDPOINT"
	EnvDynamoDB   = "SAUNA_TEST_DYNAMODB_ENDPOINT"
	EnvCloudWatch = "SAUNA_TEST_CLOUDWATCH_ENDPOINT"
)

// Region and dummy credentials used for every emulator client. No emulator
// checks signatures.
const (
	Region          = "us-east-1"
	AccessKeyID     = "test"
	SecretAccessKey = "test"
)

// Env holds the emulator endpoints from SAUNA_TEST_*_ENDPOINT.
//
// The fields carry a URL suffix because Env's client constructors are named
// after the services.
type Env struct {
	KinesisURL    string
	DynamoDBURL   string
	CloudWatchURL string // empty when moto_server was skipped (WITH_MOTO=0)
}

// FromEnv reads the endpoints without skipping; fields are empty when unset.
func FromEnv() Env {
	return Env{
		KinesisURL:    strings.TrimSpace(os.Getenv(EnvKinesis)),
		DynamoDBURL:   strings.TrimSpace(os.Getenv(EnvDynamoDB)),
		CloudWatchURL: strings.TrimSpace(os.Getenv(EnvCloudWatch)),
	}
}

// Require returns the emulator endpoints, or skips the test when the Kinesis
// or DynamoDB endpoint is not set. CloudWatch is optional: see
// [Env.CloudWatch].
func Require(t testing.TB) Env {
	t.Helper()
	e := FromEnv()
	var missing []string
	if e.KinesisURL == "" {
		missing = append(missing, EnvKinesis)
	}
	if e.DynamoDBURL == "" {
		missing = append(missing, EnvDynamoDB)
	}
	if len(missing) > 0 {
		t.Skipf("needs the local AWS emulators: set %s (run scripts/test.sh, or eval \"$(scripts/emulators/emulators.sh env)\" after emulators.sh start)",
			strings.Join(missing, " and "))
	}
	return e
}

// AWSConfig returns a config with static test/test credentials in us-east-1.
// It is built by hand rather than by config.LoadDefaultConfig, which reads
// shared config files and AWS_PROFILE (failing when that profile is not in
// the files) and may ask IMDS; here no developer's real AWS setup can leak
// into a test, and nothing leaves loopback. The HTTP transport bounds the
// wait for response headers: kinesalite never answers some requests (an
// AT_TIMESTAMP iterator on a shard without later records).
func (e Env) AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 5 * time.Second }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = 30 * time.Second
			// Loopback only: never route emulator traffic through a proxy.
			tr.Proxy = nil
		})
	return aws.Config{
		Region:      Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")),
		HTTPClient:  httpClient,
		// LoadDefaultConfig's default; the zero value would gzip every
		// request body that supports compression.
		RequestMinCompressSizeBytes: 10240,
	}
}

// Kinesis returns a Kinesis client for the kinesalite endpoint.
func (e Env) Kinesis(t testing.TB) *kinesis.Client {
	t.Helper()
	url := required(t, "Kinesis", e.KinesisURL)
	return kinesis.NewFromConfig(e.AWSConfig(t), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(url) })
}

// DynamoDB returns a DynamoDB client for the dynalite endpoint.
func (e Env) DynamoDB(t testing.TB) *dynamodb.Client {
	t.Helper()
	url := required(t, "DynamoDB", e.DynamoDBURL)
	return dynamodb.NewFromConfig(e.AWSConfig(t), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(url) })
}

// required fails the test when an emulator's endpoint is unset: an Env not
// from Require is a mistake in the test, not a reason to skip it.
func required(t testing.TB, service, url string) string {
	t.Helper()
	if url == "" {
		t.Fatalf("emulator: %s endpoint is empty; get the Env from Require", service)
	}
	return url
}

// CloudWatch returns a CloudWatch client for moto_server, or skips the test
// when no CloudWatch endpoint is set (emulators started with WITH_MOTO=0).
//
// The client speaks AWS JSON 1.0: the SDK's default Smithy RPCv2 CBOR gets a
// 404 from moto 5.2.1, while JSON 1.0 works on moto and on AWS. Request
// compression is off: the SDK gzips PutMetricData bodies of 10 KiB or more,
// and moto 5.2.1 answers those with a 500 (BadGzipFile).
func (e Env) CloudWatch(t testing.TB) *cloudwatch.Client {
	t.Helper()
	if e.CloudWatchURL == "" {
		t.Skipf("needs moto_server for CloudWatch: set %s (run scripts/test.sh without WITH_MOTO=0)", EnvCloudWatch)
	}
	return cloudwatch.NewFromConfig(e.AWSConfig(t), func(o *cloudwatch.Options) {
		o.BaseEndpoint = aws.String(e.CloudWatchURL)
		o.Protocol = awsjson.New10(cwschemas.GraniteServiceVersion20100801)
		o.DisableRequestCompression = true
	})
}

var (
	// runID separates names across test binaries and runs that share one
	// emulator: go test runs packages in parallel processes.
	runID   = newRunID()
	nameSeq atomic.Uint64
)

func newRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("emulator: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// maxNameLen is the Kinesis stream name limit, the stricter of the two
// (DynamoDB tables allow 255).
const maxNameLen = 128

// UniqueName returns a name unique per test and per run, made of prefix, the
// test's name, a per-process random id and a counter. It is valid both as a
// Kinesis stream name and as a DynamoDB table name: 3 to 128 characters from
// [a-zA-Z0-9_.-].
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	suffix := fmt.Sprintf("-%s-%d", runID, nameSeq.Add(1))
	base := sanitize(prefix)
	if tn := sanitize(t.Name()); tn != "" {
		if base != "" {
			base += "-"
		}
		base += tn
	}
	if base == "" {
		base = "t"
	}
	if room := maxNameLen - len(suffix); len(base) > room {
		base = base[:room]
	}
	return base + suffix
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// opTimeout bounds every helper call; the emulators answer in milliseconds.
const opTimeout = 30 * time.Second

// NewStream creates a stream of the given shards under a name of its own
// (see UniqueName) and returns the name; it is deleted when the test ends.
func (e Env) NewStream(t testing.TB, prefix string, shards int32) string {
	t.Helper()
	name := UniqueName(t, prefix)
	e.CreateStream(t, name, shards)
	return name
}

// CreateStream creates a stream with the given number of shards, waits until
// it is ACTIVE, and deletes it when the test ends (errors ignored: the
// emulator may already be gone).
func (e Env) CreateStream(t testing.TB, name string, shards int32) {
	t.Helper()
	client := e.Kinesis(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(name),
		ShardCount: aws.Int32(shards),
	}); err != nil {
		t.Fatalf("emulator: create stream %q: %v", name, err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteStream(ctx, &kinesis.DeleteStreamInput{
			StreamName:              aws.String(name),
			EnforceConsumerDeletion: aws.Bool(true),
		})
	})
	// The waiter's default first delay is 10 s; the emulators are ready in
	// milliseconds.
	waiter := kinesis.NewStreamExistsWaiter(client, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := waiter.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, opTimeout); err != nil {
		t.Fatalf("emulator: wait for stream %q to become ACTIVE: %v", name, err)
	}
}

// Record is one record for [Env.PutRecords].
type Record struct {
	PartitionKey string
	Data         []byte
}

// putRecordsMax is the PutRecords per-call limit.
const putRecordsMax = 500

// PutRecords writes recs in order, in calls of at most 500, and returns their
// sequence numbers in the same order. Any failed record fails the test: the
// emulators never throttle, so a failure is a bug. Call it from the test's
// own goroutine (it may call t.Fatalf).
func (e Env) PutRecords(t testing.TB, stream string, recs []Record) []string {
	t.Helper()
	client := e.Kinesis(t)
	seqs := make([]string, 0, len(recs))
	for start := 0; start < len(recs); start += putRecordsMax {
		batch := recs[start:min(start+putRecordsMax, len(recs))]
		entries := make([]kinesistypes.PutRecordsRequestEntry, len(batch))
		for i, r := range batch {
			entries[i] = kinesistypes.PutRecordsRequestEntry{
				PartitionKey: aws.String(r.PartitionKey),
				Data:         r.Data,
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		out, err := client.PutRecords(ctx, &kinesis.PutRecordsInput{
			StreamName: aws.String(stream),
			Records:    entries,
		})
		cancel()
		if err != nil {
			t.Fatalf("emulator: put %d records to %q: %v", len(batch), stream, err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n > 0 {
			for i, r := range out.Records {
				if r.ErrorCode != nil {
					t.Errorf("emulator: record %d to %q failed: %s: %s",
						start+i, stream, aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
				}
			}
			t.Fatalf("emulator: PutRecords to %q: %d of %d records failed", stream, n, len(batch))
		}
		if len(out.Records) != len(batch) {
			t.Fatalf("emulator: PutRecords to %q returned %d results for %d records", stream, len(out.Records), len(batch))
		}
		for _, r := range out.Records {
			seqs = append(seqs, aws.ToString(r.SequenceNumber))
		}
	}
	return seqs
}
