package ddbtable

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Expr collects the placeholders of one request. Every attribute goes through
// a name placeholder, so that no attribute can collide with a reserved word
// ("status", "owner", "reason" are), and only what is used is sent: DynamoDB
// rejects unused placeholders. Names and Values go into the request's
// ExpressionAttributeNames and ExpressionAttributeValues; they stay nil until
// used.
type Expr struct {
	Names  map[string]string
	Values map[string]types.AttributeValue
}

// Name returns the placeholder "#attr" of attr.
func (e *Expr) Name(attr string) string {
	if e.Names == nil {
		e.Names = make(map[string]string)
	}
	e.Names["#"+attr] = attr
	return "#" + attr
}

// Value returns the placeholder ":key" of v.
func (e *Expr) Value(key string, v types.AttributeValue) string {
	if e.Values == nil {
		e.Values = make(map[string]types.AttributeValue)
	}
	e.Values[":"+key] = v
	return ":" + key
}

// Update builds an UpdateExpression of SET, ADD and REMOVE clauses, and the
// condition's placeholders along with it.
type Update struct {
	Expr
	sets    []string
	adds    []string
	removes []string
}

// Set sets attr to v, placed as ":v_attr".
func (u *Update) Set(attr string, v types.AttributeValue) {
	u.sets = append(u.sets, u.Name(attr)+" = "+u.Value("v_"+attr, v))
}

// SetExpr sets attr to a computed value; format's arguments are placeholders
// obtained from u.
func (u *Update) SetExpr(attr, format string, args ...any) {
	u.sets = append(u.sets, u.Name(attr)+" = "+fmt.Sprintf(format, args...))
}

// SetOrRemove keeps empty strings out of the table: v == "" removes attr.
func (u *Update) SetOrRemove(attr, v string) {
	if v == "" {
		u.Remove(attr)
		return
	}
	u.Set(attr, S(v))
}

// Remove removes attr.
func (u *Update) Remove(attr string) { u.removes = append(u.removes, u.Name(attr)) }

// Add adds v's elements to the set attr, creating it if absent.
func (u *Update) Add(attr string, v types.AttributeValue) {
	u.adds = append(u.adds, u.Name(attr)+" "+u.Value("v_"+attr, v))
}

// Expression is the UpdateExpression.
func (u *Update) Expression() string {
	var parts []string
	if len(u.sets) > 0 {
		parts = append(parts, "SET "+strings.Join(u.sets, ", "))
	}
	if len(u.adds) > 0 {
		parts = append(parts, "ADD "+strings.Join(u.adds, ", "))
	}
	if len(u.removes) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(u.removes, ", "))
	}
	return strings.Join(parts, " ")
}

// S is a string attribute value.
func S(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

// N is a number attribute value.
func N(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// Str reads a string attribute. Another type counts as absent: neither sauna
// nor the KCL could use it.
func Str(item map[string]types.AttributeValue, name string) (string, bool) {
	v, ok := item[name].(*types.AttributeValueMemberS)
	if !ok {
		return "", false
	}
	return v.Value, true
}

// Num reads a number attribute as an integer. Another type counts as absent.
func Num(item map[string]types.AttributeValue, name string) (int64, bool) {
	v, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		// Written by something else as a fraction; the whole part will do.
		f, ferr := strconv.ParseFloat(v.Value, 64)
		if ferr != nil {
			return 0, false
		}
		i = int64(f)
	}
	return i, true
}

// IsConditionFailed reports whether err is DynamoDB's refusal of a
// ConditionExpression: the item is not in the state the request named.
func IsConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}
