package kinesis

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/awslabs/kinesis-aggregation/go/v2/deaggregator"
	rec "github.com/awslabs/kinesis-aggregation/go/v2/records"
	"github.com/golang/protobuf/proto"
)

// aggregate frames body as a KPL aggregate record: magic, body, MD5 of body.
func aggregate(body []byte) []byte {
	sum := md5.Sum(body)
	return append(append(append([]byte{}, kplMagic...), body...), sum[:]...)
}

func aggregateOf(t *testing.T, keys []string, data ...[]byte) []byte {
	t.Helper()
	a := &rec.AggregatedRecord{PartitionKeyTable: keys}
	for i, d := range data {
		a.Records = append(a.Records, &rec.Record{PartitionKeyIndex: proto.Uint64(uint64(i % len(keys))), Data: d})
	}
	body, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return aggregate(body)
}

func TestAggregateGuardDefusesCorruptAggregates(t *testing.T) {
	badIndex, err := proto.Marshal(&rec.AggregatedRecord{PartitionKeyTable: []string{"a"},
		Records: []*rec.Record{{PartitionKeyIndex: proto.Uint64(7), Data: []byte("x")}}})
	if err != nil {
		t.Fatal(err)
	}
	garbage := aggregate([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	batch := []types.Record{
		{SequenceNumber: aws.String("1"), PartitionKey: aws.String("p"), Data: []byte(`{"plain":1}`)},
		{SequenceNumber: aws.String("2"), PartitionKey: aws.String("p"), Data: aggregateOf(t, []string{"a", "b"}, []byte("one"), []byte("two"))},
		{SequenceNumber: aws.String("3"), PartitionKey: aws.String("p"), Data: garbage},
		{SequenceNumber: aws.String("4"), PartitionKey: aws.String("p"), Data: aggregate(badIndex)},
		// The magic with a wrong checksum is a plain record to the KCL too.
		{SequenceNumber: aws.String("5"), PartitionKey: aws.String("p"), Data: append(append([]byte{}, kplMagic...), bytes.Repeat([]byte("z"), 20)...)},
	}
	if _, err := deaggregator.DeaggregateRecords(batch[:3]); err == nil {
		t.Fatal("the KCL's de-aggregator accepts the corrupt aggregate; the guard is pointless")
	}
	var reports []string
	g := newAggregateGuard(slog.New(slog.NewTextHandler(io.Discard, nil)), func(shard, first, last string) {
		reports = append(reports, shard+":"+first+"-"+last)
	})
	g.track("it-1", "shardId-000000000003", "")
	shard := g.track("it-2", "", "it-1")
	g.inspect(shard, batch)

	out, err := deaggregator.DeaggregateRecords(batch)
	if err != nil {
		t.Fatalf("after the guard the batch still fails: %v", err)
	}
	if len(out) != 6 { // plain, two user records, two defused, one plain
		t.Errorf("%d records after de-aggregation, want 6", len(out))
	}
	if want := []string{"shardId-000000000003:1-5", "shardId-000000000003:1-5"}; len(reports) != 2 || reports[0] != want[0] {
		t.Errorf("reports %v, want %v", reports, want)
	}
	orig, _, ok := IsDefusedAggregate(batch[2].Data)
	if !ok || !bytes.Equal(orig, garbage) {
		t.Errorf("defused record does not give back its original bytes")
	}
	if _, _, ok := IsDefusedAggregate(batch[0].Data); ok {
		t.Error("a plain record taken for a defused aggregate")
	}
	if _, _, ok := IsDefusedAggregate(batch[4].Data); ok {
		t.Error("a record with a wrong checksum was altered")
	}
}

func TestAggregateGuardRejectsOversizedAggregates(t *testing.T) {
	empties := func(n int) [][]byte {
		d := make([][]byte, n)
		for i := range d {
			d[i] = []byte{}
		}
		return d
	}
	atCap := aggregateOf(t, []string{"k"}, empties(MaxAggregateRecords)...)
	bomb := aggregateOf(t, []string{"k"}, empties(MaxAggregateRecords+1)...)
	batch := []types.Record{
		{SequenceNumber: aws.String("1"), PartitionKey: aws.String("p"), Data: atCap},
		{SequenceNumber: aws.String("2"), PartitionKey: aws.String("p"), Data: bomb},
	}
	var logs bytes.Buffer
	reports := 0
	g := newAggregateGuard(slog.New(slog.NewTextHandler(&logs, nil)), func(string, string, string) { reports++ })
	g.inspect("shardId-000000000000", batch)

	if !bytes.Equal(batch[0].Data, atCap) {
		t.Error("an aggregate at the bound was altered")
	}
	orig, why, ok := IsDefusedAggregate(batch[1].Data)
	if !ok || !bytes.Equal(orig, bomb) {
		t.Fatal("the oversized aggregate was not defused with its original bytes kept")
	}
	if want := fmt.Sprintf("KPL aggregate record of %d user records, more than the %d", MaxAggregateRecords+1, MaxAggregateRecords); !strings.Contains(why, want) {
		t.Errorf("why %q, want it to contain %q", why, want)
	}
	out, err := deaggregator.DeaggregateRecords(batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != MaxAggregateRecords+1 {
		t.Errorf("%d records after de-aggregation, want %d and the defused one", len(out), MaxAggregateRecords)
	}
	if reports != 1 || strings.Count(logs.String(), "\n") != 1 || !strings.Contains(logs.String(), fmt.Sprintf("user_records=%d", MaxAggregateRecords+1)) {
		t.Errorf("%d reports, log %q; want one of each, with the count", reports, logs.String())
	}
}

func TestCountUserRecords(t *testing.T) {
	for _, n := range []int{0, 1, 2, 300} {
		data := make([][]byte, n)
		for i := range data {
			data[i] = bytes.Repeat([]byte("x"), i)
		}
		keys := []string{"a", "b", "c"}
		a := aggregateOf(t, keys, data...)
		got, framed := countUserRecords(a[len(kplMagic) : len(a)-md5.Size])
		if got != n || !framed {
			t.Errorf("countUserRecords of %d records = %d, %v", n, got, framed)
		}
	}
	for _, body := range [][]byte{{0xff, 0xff, 0xff, 0xff, 0x0f}, {0x1a, 0x05, 0x00}, {0x1b}} {
		if _, framed := countUserRecords(body); framed {
			t.Errorf("broken framing %x counted as framed", body)
		}
	}
}
