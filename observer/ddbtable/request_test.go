package ddbtable

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestExprSendsOnlyWhatIsUsed(t *testing.T) {
	var e Expr
	if e.Names != nil || e.Values != nil {
		t.Fatal("a fresh Expr has placeholders")
	}
	cond := "attribute_not_exists(" + e.Name("owner") + ")"
	if cond != "attribute_not_exists(#owner)" || e.Values != nil {
		t.Fatalf("condition %q, values %v: want #owner and no values", cond, e.Values)
	}
	if got := e.Value("me", S("w1")); got != ":me" {
		t.Fatalf("Value placeholder %q, want :me", got)
	}
	if diff := cmp.Diff(map[string]string{"#owner": "owner"}, e.Names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]types.AttributeValue{":me": S("w1")}, e.Values, cmpopts.IgnoreUnexported(types.AttributeValueMemberS{})); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
}

func TestUpdateExpression(t *testing.T) {
	var u Update
	if got := u.Expression(); got != "" {
		t.Fatalf("empty update %q", got)
	}
	u.Set("status", S("done"))
	u.SetExpr("attempts", "if_not_exists(%s, %s) + %s", u.Name("attempts"), u.Value("zero", N(0)), u.Value("one", N(1)))
	u.SetOrRemove("reason", "")
	u.SetOrRemove("owner", "w1")
	u.Add("conflicts", &types.AttributeValueMemberSS{Value: []string{"d2"}})
	u.Remove("claimedUntil")
	want := "SET #status = :v_status, #attempts = if_not_exists(#attempts, :zero) + :one, #owner = :v_owner" +
		" ADD #conflicts :v_conflicts REMOVE #reason, #claimedUntil"
	if got := u.Expression(); got != want {
		t.Errorf("expression\n got %q\nwant %q", got, want)
	}
	for _, attr := range []string{"status", "attempts", "reason", "owner", "conflicts", "claimedUntil"} {
		if u.Names["#"+attr] != attr {
			t.Errorf("no name placeholder for %s: %v", attr, u.Names)
		}
	}
	if len(u.Values) != 5 {
		t.Errorf("values %v, want :v_status :zero :one :v_owner :v_conflicts", u.Values)
	}
}

func TestReadAttributes(t *testing.T) {
	item := map[string]types.AttributeValue{
		"s":    S("x"),
		"n":    N(42),
		"frac": &types.AttributeValueMemberN{Value: "7.9"},
		"bad":  &types.AttributeValueMemberN{Value: "x"},
	}
	for _, tc := range []struct {
		name string
		v    string
		ok   bool
	}{{"s", "x", true}, {"n", "", false}, {"missing", "", false}} {
		if v, ok := Str(item, tc.name); v != tc.v || ok != tc.ok {
			t.Errorf("Str(%s) = %q, %v; want %q, %v", tc.name, v, ok, tc.v, tc.ok)
		}
	}
	for _, tc := range []struct {
		name string
		v    int64
		ok   bool
	}{{"n", 42, true}, {"frac", 7, true}, {"bad", 0, false}, {"s", 0, false}, {"missing", 0, false}} {
		if v, ok := Num(item, tc.name); v != tc.v || ok != tc.ok {
			t.Errorf("Num(%s) = %d, %v; want %d, %v", tc.name, v, ok, tc.v, tc.ok)
		}
	}
}

func TestIsConditionFailed(t *testing.T) {
	ccf := &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
	if !IsConditionFailed(fmt.Errorf("update: %w", ccf)) {
		t.Error("a wrapped ConditionalCheckFailedException is not recognised")
	}
	if IsConditionFailed(errors.New("ConditionalCheckFailedException")) || IsConditionFailed(nil) {
		t.Error("a mere message or nil counts as a failed condition")
	}
}
