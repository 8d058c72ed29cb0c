package kinesis

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// answerKey carries, in a request's context, the body its answer has.
type answerKey struct{}

// answeringClient answers each GetRecords call with the body in its
// context, through recordsProtocol if mine, else through the SDK alone.
func answeringClient(mine bool) *kds.Client {
	client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		body, _ := r.Context().Value(answerKey{}).([]byte)
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
			ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
	})}
	return kds.New(kds.Options{Region: "us-east-1", HTTPClient: client, BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1}, func(o *kds.Options) {
		if mine {
			withRecordsProtocol(o)
		}
	})
}

// answerOutcome is what a client made of an answer.
type answerOutcome struct {
	out      *kds.GetRecordsOutput
	err      error
	panicked any
}

func getRecordsWith(kin *kds.Client, body []byte) (o answerOutcome) {
	defer func() { o.panicked = recover() }()
	ctx := context.WithValue(context.Background(), answerKey{}, body)
	o.out, o.err = kin.GetRecords(ctx, &kds.GetRecordsInput{ShardIterator: aws.String("it")})
	return o
}

// outputDiff describes how got differs from want, nil pointers and slices
// included; "" when it does not.
func outputDiff(want, got *kds.GetRecordsOutput) string {
	var d []string
	add := func(f string, a ...any) { d = append(d, fmt.Sprintf(f, a...)) }
	ptr := func(name string, w, g *string) {
		if (w == nil) != (g == nil) || w != nil && *w != *g {
			add("%s: SDK %s, here %s", name, showPtr(w), showPtr(g))
		}
	}
	ptr("NextShardIterator", want.NextShardIterator, got.NextShardIterator)
	if w, g := want.MillisBehindLatest, got.MillisBehindLatest; (w == nil) != (g == nil) || w != nil && *w != *g {
		add("MillisBehindLatest: SDK %v, here %v", showPtr(w), showPtr(g))
	}
	if len(want.ChildShards) != len(got.ChildShards) || (want.ChildShards == nil) != (got.ChildShards == nil) {
		add("ChildShards: SDK %+v, here %+v", want.ChildShards, got.ChildShards)
	}
	if (want.Records == nil) != (got.Records == nil) || len(want.Records) != len(got.Records) {
		add("Records: SDK %d (nil %v), here %d (nil %v)", len(want.Records), want.Records == nil, len(got.Records), got.Records == nil)
		return strings.Join(d, "\n")
	}
	for i := range want.Records {
		w, g := &want.Records[i], &got.Records[i]
		ptr(fmt.Sprintf("Records[%d].SequenceNumber", i), w.SequenceNumber, g.SequenceNumber)
		ptr(fmt.Sprintf("Records[%d].PartitionKey", i), w.PartitionKey, g.PartitionKey)
		if (w.Data == nil) != (g.Data == nil) || !bytes.Equal(w.Data, g.Data) {
			add("Records[%d].Data: SDK %q (nil %v), here %q (nil %v)", i, w.Data, w.Data == nil, g.Data, g.Data == nil)
		}
		if wt, gt := w.ApproximateArrivalTimestamp, g.ApproximateArrivalTimestamp; (wt == nil) != (gt == nil) || wt != nil && *wt != *gt {
			add("Records[%d].ApproximateArrivalTimestamp: SDK %v, here %v", i, showPtr(wt), showPtr(gt))
		}
		if w.EncryptionType != g.EncryptionType {
			add("Records[%d].EncryptionType: SDK %q, here %q", i, w.EncryptionType, g.EncryptionType)
		}
	}
	return strings.Join(d, "\n")
}

func showPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("%#v", *p)
}

// getRecordsFuzzSeeds are answers beyond getRecordsBodies that exercise
// the corners of the format.
var getRecordsFuzzSeeds = []string{
	``,
	` `,
	`{}`,
	`null`,
	`{"Records":[{}]}`,
	`{"Records":[{"Data":""}]}`,
	`{"Records":[{"Data":"eB=="}]}`,
	`{"Records":[{"Data":"eA"}]}`,
	`{"Records":[{"Data":"eA=="}]}{}`,
	`{"Records":[{"SequenceNumber":"\ud800","PartitionKey":"\ud83d\u0041\udc00","Data":"eA=="}]}`,
	`{"Records":[{"PartitionKey":"\u00e9\/\b\f\r\t\"\\","EncryptionType":"NONE"}]}`,
	"{\"Records\":[{\"PartitionKey\":\"\\n\xff\xfe\"}]}",
	`{"Records":[],"X":"\q"}`,
	`{"Records":[],"X":"\u12G4"}`,
	`{"Records":[],"X":["\u00"]}`,
	`{"Records":[],"X":null}`,
	`{"Records":[],"\u0058":1}`,
	`{"Records":[],"X":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":-0}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":-0.0e-0}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1e400}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1e-400}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":9223372036854775807}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":9007199254740993}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1765119898.1239999}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":"NaN"}]}`,
	`{"Records":[],"MillisBehindLatest":-9223372036854775808}`,
	`{"Records":[],"MillisBehindLatest":9223372036854775808}`,
	`{"Records":[],"MillisBehindLatest":-0}`,
	`{"Records":[],"MillisBehindLatest":01}`,
	`{"Records":[],"MillisBehindLatest":1e2}`,
	`{"Records":[],"NextShardIterator":""}`,
	`{"Records":[],"ChildShards":[]}`,
	`{"Records":[],"ChildShards":null}`,
	`{"Records":[{"Data":"eA==","PartitionKey":"k","SequenceNumber":"1","ApproximateArrivalTimestamp":1,"EncryptionType":"KMS","EncryptionType":"NONE"}]}`,
	`{"records":[{"Data":"eA=="}],"nextShardIterator":"x"}`,
	`{"Records":[{"Data":"eA=="},]}`,
	`{"Records":[{"Data":"eA==",}]}`,
	`{"Records":[{"Data":"eA=="}],}`,
	"\t{\r\"Records\"\n:\t[\r{\n\"Data\"\t:\r\"eA==\"\n}\t]\r}\n",
	`{"Records":[{"X":truex}]}`,
	`{"Records":[{"X":tru}]}`,
	`{"Records":[{"X":-}]}`,
	`{"Records":[{"X":1.}]}`,
	`{"Records":[{"X":"\`,
	`{"Records":[{"X":"`,
}

// FuzzGetRecordsDecoder: for any answer, recordsProtocol either leaves it
// to the SDK or makes of it exactly what the SDK makes of it, and what it
// returns holds none of the buffer it read the answer into.
func FuzzGetRecordsDecoder(f *testing.F) {
	for _, c := range getRecordsBodies {
		f.Add([]byte(c.body))
	}
	for _, s := range getRecordsFuzzSeeds {
		f.Add([]byte(s))
	}
	sdk, mine := answeringClient(false), answeringClient(true)
	f.Fuzz(func(t *testing.T, body []byte) {
		want := getRecordsWith(sdk, body)

		var a recordsAnswer
		buf := bytes.Clone(body)
		if a.decode(buf) == nil {
			// Whatever of the answer was kept must be a copy.
			for i := range buf {
				buf[i] = '#'
			}
			if want.panicked != nil || want.err != nil {
				t.Fatalf("decoded here, but the SDK failed: %v %v", want.panicked, want.err)
			}
			got := &kds.GetRecordsOutput{Records: a.Records, NextShardIterator: a.NextShardIterator, MillisBehindLatest: a.MillisBehindLatest}
			if d := outputDiff(want.out, got); d != "" {
				t.Fatalf("decoded here differently from the SDK:\n%s", d)
			}
		}

		got := getRecordsWith(mine, body)
		check := func(when string) {
			// Where the SDK alone panics, recordsProtocol fails the read.
			if got.panicked != nil || (want.err != nil || want.panicked != nil) != (got.err != nil) {
				t.Fatalf("%s: panic %v, err %v; the SDK's panic %v, err %v", when, got.panicked, got.err, want.panicked, want.err)
			}
			if want.out != nil && got.out != nil {
				if d := outputDiff(want.out, got.out); d != "" {
					t.Fatalf("%s: output differs from the SDK's:\n%s", when, d)
				}
			}
		}
		check("decoded")
		// The next answer of the same length reuses the buffer.
		getRecordsWith(mine, bytes.Repeat([]byte{' '}, len(body)))
		check("after the buffer's reuse")
	})
}
