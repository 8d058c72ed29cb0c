package outcomes

import (
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// expr collects the placeholders of one request. Every attribute goes through
// a name placeholder ("status", "owner" and "reason" are reserved words), and
// only what is used is sent: DynamoDB rejects unused placeholders.
type expr struct {
	names  map[string]string
	values map[string]types.AttributeValue
}

func (e *expr) name(attr string) string {
	if e.names == nil {
		e.names = make(map[string]string)
	}
	e.names["#"+attr] = attr
	return "#" + attr
}

func (e *expr) value(key string, v types.AttributeValue) string {
	if e.values == nil {
		e.values = make(map[string]types.AttributeValue)
	}
	e.values[":"+key] = v
	return ":" + key
}

// update builds an UpdateExpression of SET, ADD and REMOVE clauses.
type update struct {
	expr
	sets    []string
	adds    []string
	removes []string
}

func (u *update) set(attr string, v types.AttributeValue) {
	u.sets = append(u.sets, u.name(attr)+" = "+u.value("v_"+attr, v))
}

// setExpr sets attr to a computed value; format's arguments are placeholders
// obtained from u.
func (u *update) setExpr(attr, format string, args ...any) {
	u.sets = append(u.sets, u.name(attr)+" = "+fmt.Sprintf(format, args...))
}

// setOrRemove keeps empty strings out of the table.
func (u *update) setOrRemove(attr, v string) {
	if v == "" {
		u.remove(attr)
		return
	}
	u.set(attr, s(v))
}

func (u *update) remove(attr string) { u.removes = append(u.removes, u.name(attr)) }

// add adds v's elements to the set attr, creating it if absent.
func (u *update) add(attr string, v types.AttributeValue) {
	u.adds = append(u.adds, u.name(attr)+" "+u.value("v_"+attr, v))
}

func (u *update) expression() string {
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
