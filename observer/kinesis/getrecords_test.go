package kinesis

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// getRecordsBodies are GetRecords answers: plain ones, decoded by
// recordsProtocol itself, and others it leaves to the SDK.
var getRecordsBodies = []struct {
	name, body string
	plain      bool
}{
	{"empty", `{"Records":[],"NextShardIterator":"AAA","MillisBehindLatest":0}`, true},
	{"typical", fmt.Sprintf(`{"Records":[{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ApproximateArrivalTimestamp":1765119898.123,"Data":%q,"PartitionKey":"ds17"},`+
		`{"SequenceNumber":"49590338271490256608559692538361571095921575989136588899","ApproximateArrivalTimestamp":1765119899,"Data":%q,"PartitionKey":"ds18","EncryptionType":"KMS"}],`+
		`"NextShardIterator":"AAAAAAAAAAE=","MillisBehindLatest":1234}`, b64(`{"a":1}`), b64("\xf3\x89\x9a\xc2 not utf-8 \x00")), true},
	{"whitespace and order", " {\n \"MillisBehindLatest\" : 7 ,\t\"Records\" : [ { \"Data\" : \"\" , \"PartitionKey\" : \"k\" } ] , \"NextShardIterator\" : \"i\" } \n", true},
	{"unknown members", `{"Records":[{"Data":"eA==","X":{"a":[1,2.5e3,true,false,"s",{}]},"SequenceNumber":"1"}],"Extra":[[]],"NextShardIterator":"i"}`, true},
	{"no iterator (closed shard)", `{"Records":[],"MillisBehindLatest":0}`, true},
	{"timestamp with exponent", `{"Records":[{"ApproximateArrivalTimestamp":1.7651198981239E9,"Data":"eA=="}]}`, true},
	{"escaped key", `{"Records":[{"PartitionKey":"a\"b\\c\u00e9\ud83d\ude00\n","Data":"eA=="}]}`, true},
	{"unicode key", `{"Records":[{"PartitionKey":"clé","Data":"eA=="}]}`, true},
	{"invalid utf-8 key", "{\"Records\":[{\"PartitionKey\":\"a\xffb\",\"Data\":\"eA==\"}]}", true},
	{"null iterator", `{"Records":[],"NextShardIterator":null}`, false},
	{"null record", `{"Records":[null]}`, false},
	{"null data", `{"Records":[{"Data":null}]}`, false},
	{"child shards", `{"Records":[],"ChildShards":[{"ShardId":"shardId-000000000004","ParentShards":["shardId-000000000001"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"9"}}]}`, false},
	{"duplicate member", `{"Records":[],"Records":[{"Data":"eA=="}]}`, false},
	{"bad base64", `{"Records":[{"Data":"e!=="}]}`, false},
	{"escaped base64", `{"Records":[{"Data":"eA\u003d\u003d"}]}`, false},
	{"float millis", `{"Records":[],"MillisBehindLatest":1.5}`, false},
	{"plus millis", `{"Records":[],"MillisBehindLatest":+1}`, false},
	{"control character", "{\"Records\":[{\"PartitionKey\":\"a\tb\",\"Data\":\"eA==\"}]}", false},
	{"truncated", `{"Records":[{"Data":"eA=="}`, false},
	{"trailing garbage", `{"Records":[]} x`, false},
	{"not an object", `[]`, false},
	{"string timestamp", `{"Records":[{"ApproximateArrivalTimestamp":"1"}]}`, false},
	{"invalid escape in an unknown member", `{"Records":[],"X":"\q"}`, false},
	{"short unicode escape in an unknown member", `{"Records":[{"Data":"eA==","X":["\u00"]}]}`, false},
	{"escape at the end", `{"Records":[],"X":"\`, false},
}

// recordsClient answers its calls with bodies, one after the other.
func recordsClient(mine bool, bodies ...string) *kds.Client {
	client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		if len(bodies) == 0 {
			return nil, fmt.Errorf("no answer left")
		}
		body := bodies[0]
		bodies = bodies[1:]
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
			ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})}
	return kds.New(kds.Options{Region: "us-east-1", HTTPClient: client, BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1}, func(o *kds.Options) {
		if mine {
			withRecordsProtocol(o)
		}
	})
}

// recordsProtocol makes of every answer what the SDK's own decoder makes of
// it, and decodes the plain ones itself.
func TestRecordsProtocolDecodesAsTheSDK(t *testing.T) {
	opts := cmp.Options{
		cmpopts.IgnoreFields(kds.GetRecordsOutput{}, "ResultMetadata"),
		cmpopts.IgnoreUnexported(kds.GetRecordsOutput{}, types.Record{}, types.ChildShard{}, types.HashKeyRange{}),
		cmpopts.EquateEmpty(),
	}
	for _, c := range getRecordsBodies {
		t.Run(c.name, func(t *testing.T) {
			var a recordsAnswer
			if err := a.decode([]byte(c.body)); (err == nil) != c.plain {
				t.Errorf("decoded here: %v, want %v (err %v)", err == nil, c.plain, err)
			}
			in := &kds.GetRecordsInput{ShardIterator: aws.String("it")}
			want, wantErr := recordsClient(false, c.body).GetRecords(context.Background(), in)
			got, gotErr := recordsClient(true, c.body).GetRecords(context.Background(), in)
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("err %v, the SDK's %v", gotErr, wantErr)
			}
			if wantErr != nil {
				return
			}
			if d := cmp.Diff(want, got, opts); d != "" {
				t.Errorf("output differs from the SDK's (-SDK +here):\n%s", d)
			}
		})
	}
}

// Buffers are reused across answers: an answer decoded after a longer one
// holds none of its bytes.
func TestRecordsProtocolReusesBuffers(t *testing.T) {
	long := fmt.Sprintf(`{"Records":[{"SequenceNumber":"1","Data":%q,"PartitionKey":"long key"}],"NextShardIterator":"next"}`, b64(strings.Repeat("x", 3000)))
	short := fmt.Sprintf(`{"Records":[{"SequenceNumber":"2","Data":%q,"PartitionKey":"k"}]}`, b64("y"))
	kin := recordsClient(true, long, short)
	var first []types.Record
	for i := range 2 {
		out, err := kin.GetRecords(context.Background(), &kds.GetRecordsInput{ShardIterator: aws.String("it")})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = out.Records
			continue
		}
		if len(out.Records) != 1 || string(out.Records[0].Data) != "y" || aws.ToString(out.Records[0].PartitionKey) != "k" || out.NextShardIterator != nil {
			t.Errorf("second answer: %+v", out)
		}
	}
	if string(first[0].Data) != strings.Repeat("x", 3000) || aws.ToString(first[0].PartitionKey) != "long key" {
		t.Errorf("first answer changed by the second: key %q, %d bytes", aws.ToString(first[0].PartitionKey), len(first[0].Data))
	}
}

// BenchmarkGetRecordsAnswer decodes a batch of 10,000 commands of about
// 480 bytes, as in the steady drain benchmark, through the SDK's decoder
// and through recordsProtocol; ns/op and B/op are per batch.
func BenchmarkGetRecordsAnswer(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"Records":[`)
	for i := range 10000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"SequenceNumber":"4959033827149025660855969253836157109592157598913658%04d","ApproximateArrivalTimestamp":1765119898.%03d,"Data":%q,"PartitionKey":"ds%d"}`,
			i, i%1000, b64(strings.Repeat("c", 480)), i%2000)
	}
	sb.WriteString(`],"NextShardIterator":"AAAAAAAAAAE=","MillisBehindLatest":0}`)
	body := sb.String()
	for _, mine := range []bool{false, true} {
		name := "sdk"
		if mine {
			name = "recordsProtocol"
		}
		b.Run(name, func(b *testing.B) {
			client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
					ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
			})}
			kin := kds.New(kds.Options{Region: "us-east-1", HTTPClient: client, BaseEndpoint: aws.String("http://127.0.0.1:1"),
				Credentials: aws.AnonymousCredentials{}}, func(o *kds.Options) {
				if mine {
					withRecordsProtocol(o)
				}
			})
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				out, err := kin.GetRecords(context.Background(), &kds.GetRecordsInput{ShardIterator: aws.String("it")})
				if err != nil || len(out.Records) != 10000 {
					b.Fatalf("%v, %d records", err, len(out.Records))
				}
			}
		})
	}
}

// closeCounter is a body that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed *int
}

func (c closeCounter) Close() error { *c.closed++; return nil }

// The connection's body is closed whether the answer was decoded here or
// by the SDK: an unclosed one would keep its connection out of the pool.
func TestRecordsProtocolClosesTheBody(t *testing.T) {
	for _, body := range []string{`{"Records":[]}`, `{"Records":[null]}`} {
		closed := 0
		client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
				ContentLength: int64(len(body)), Body: closeCounter{strings.NewReader(body), &closed}, Request: r}, nil
		})}
		kin := kds.New(kds.Options{Region: "us-east-1", HTTPClient: client, BaseEndpoint: aws.String("http://127.0.0.1:1"),
			Credentials: aws.AnonymousCredentials{}}, withRecordsProtocol)
		if _, err := kin.GetRecords(context.Background(), &kds.GetRecordsInput{ShardIterator: aws.String("it")}); err != nil {
			t.Fatal(err)
		}
		if closed == 0 {
			t.Errorf("%s: body not closed", body)
		}
	}
}

// An error answer is the SDK's to decode, even one whose body would pass
// for a plain answer with no records and no iterator (which reads as a
// closed shard).
func TestRecordsProtocolLeavesErrorsToTheSDK(t *testing.T) {
	for _, c := range []struct {
		status     int
		body, code string
	}{
		{400, `{"__type":"ExpiredIteratorException","message":"Iterator expired"}`, "ExpiredIteratorException"},
		{400, `{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded"}`, "ProvisionedThroughputExceededException"},
		{500, `{"__type":"InternalFailure"}`, "InternalFailure"},
		{503, `{}`, "UnknownError"},
	} {
		client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: c.status, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
				ContentLength: int64(len(c.body)), Body: io.NopCloser(strings.NewReader(c.body)), Request: r}, nil
		})}
		kin := kds.New(kds.Options{Region: "us-east-1", HTTPClient: client, BaseEndpoint: aws.String("http://127.0.0.1:1"),
			Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1}, withRecordsProtocol)
		_, err := kin.GetRecords(context.Background(), &kds.GetRecordsInput{ShardIterator: aws.String("it")})
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != c.code {
			t.Errorf("%d %s: err %v, want an API error %s", c.status, c.body, err, c.code)
		}
		var expired *types.ExpiredIteratorException
		if errors.As(err, &expired) != (c.code == "ExpiredIteratorException") {
			t.Errorf("%d %s: err %T", c.status, c.body, err)
		}
	}
}

// An answer the SDK's decoder panics on fails the read with a
// deserialization error instead of ending the process.
func TestRecordsProtocolFailsWhereTheSDKPanics(t *testing.T) {
	body := []byte(`{"Records":[{"ApproximateArrivalTimestamp":"NaN"}]}`)
	if o := getRecordsWith(answeringClient(false), body); o.panicked == nil {
		t.Fatalf("the SDK alone no longer panics on %s (err %v): this test checks nothing", body, o.err)
	}
	o := getRecordsWith(answeringClient(true), body)
	if o.panicked != nil {
		t.Fatalf("panicked: %v", o.panicked)
	}
	var de *smithy.DeserializationError
	if !errors.As(o.err, &de) || !strings.Contains(o.err.Error(), "NaN") {
		t.Fatalf("err %v, want a deserialization error naming the value", o.err)
	}
}
