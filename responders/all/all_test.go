//go:build !custom

package all_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/responders"
	_ "github.com/sauna-io/sauna/responders/all"
)

func TestBuiltInsRegister(t *testing.T) {
	var names []string
	for _, m := range responders.Modules() {
		names = append(names, m.Name)
	}
	want := []string{"hipchat", "pagerduty", "sendgrid", "slack", "webhook"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("registered modules (-want +got):\n%s", diff)
	}
}
