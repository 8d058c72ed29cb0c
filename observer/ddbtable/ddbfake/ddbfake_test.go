package ddbfake

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

func keys(ids ...string) []map[string]types.AttributeValue {
	var out []map[string]types.AttributeValue
	for _, id := range ids {
		out = append(out, map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}})
	}
	return out
}

func ids(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprint("k", i))
	}
	return out
}

func puts(ids ...string) []types.WriteRequest {
	var out []types.WriteRequest
	for _, k := range keys(ids...) {
		k["other"] = &types.AttributeValueMemberN{Value: "1"}
		out = append(out, types.WriteRequest{PutRequest: &types.PutRequest{Item: k}})
	}
	return out
}

func validation(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationException"
}

// The batch calls are refused as DynamoDB refuses them, before the test's
// answer is asked; valid ones reach it.
func TestBatchLimits(t *testing.T) {
	f := New(t, time.Second)
	f.HashKey = "id"
	answered := 0
	f.OnBatchGetItem = func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
		answered++
		return &dynamodb.BatchGetItemOutput{}, nil
	}
	f.OnBatchWriteItem = func(*dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error) {
		answered++
		return &dynamodb.BatchWriteItemOutput{}, nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	get := func(k []map[string]types.AttributeValue) error {
		_, err := f.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"t": {Keys: k}}})
		return err
	}
	write := func(w []types.WriteRequest) error {
		_, err := f.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"t": w}})
		return err
	}
	deleteTwice := []types.WriteRequest{
		{DeleteRequest: &types.DeleteRequest{Key: keys("a")[0]}},
		{PutRequest: &types.PutRequest{Item: keys("a")[0]}},
	}
	tests := []struct {
		name    string
		call    func() error
		refused bool
	}{
		{"get 100", func() error { return get(keys(ids(100)...)) }, false},
		{"get 101", func() error { return get(keys(ids(101)...)) }, true},
		{"get none", func() error { return get(nil) }, true},
		{"get a key twice", func() error { return get(keys("a", "b", "a")) }, true},
		{"get a number key and a string key alike", func() error {
			return get(append(keys("1"), map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: "1"}}))
		}, false},
		{"write 25", func() error { return write(puts(ids(25)...)) }, false},
		{"write 26", func() error { return write(puts(ids(26)...)) }, true},
		{"write none", func() error { return write(nil) }, true},
		{"put a key twice", func() error { return write(puts("a", "b", "a")) }, true},
		{"delete and put one key", func() error { return write(deleteTwice) }, true},
		{"put without its key", func() error {
			return write([]types.WriteRequest{{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"x": &types.AttributeValueMemberS{Value: "v"}}}}})
		}, true},
	}
	for _, tc := range tests {
		before := answered
		err := tc.call()
		switch {
		case tc.refused && !validation(err):
			t.Errorf("%s: %v, want a ValidationException", tc.name, err)
		case tc.refused && answered != before:
			t.Errorf("%s: refused, yet answered by the test", tc.name)
		case !tc.refused && (err != nil || answered != before+1):
			t.Errorf("%s: %v, want the test's answer", tc.name, err)
		}
	}
	if len(f.Ops()) != len(tests) {
		t.Errorf("%d calls recorded, want %d", len(f.Ops()), len(tests))
	}
}
