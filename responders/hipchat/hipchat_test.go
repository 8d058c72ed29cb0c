package hipchat

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery/deliverytest"
)

func TestRegisteredAsRetired(t *testing.T) {
	m, err := responders.Lookup("hipchat")
	if err != nil {
		t.Fatal(err)
	}
	if m.New != nil || m.Decode != nil {
		t.Error("a retired module must not build responders or decode commands")
	}
	if m.Retired != "HipChat Cloud was shut down in February 2019 (2019-02-15)" {
		t.Errorf("Retired = %q", m.Retired)
	}
	if got, ok := responders.ForConfig(ConfigV100); !ok || got.Name != "hipchat" {
		t.Errorf("ForConfig(%s) = %v, %v", ConfigV100, got.Name, ok)
	}
	// The logger config has the same name and version under another vendor;
	// it is not claimed here.
	logger := ConfigV100
	logger.Vendor = "com.snowplowanalytics.sauna.loggers"
	if got, ok := responders.ForConfig(logger); ok {
		t.Errorf("the HipChat logger config is claimed by %s", got.Name)
	}
}

func TestCommandIsRejectedAsRetired(t *testing.T) {
	record, err := os.ReadFile("testdata/command.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = responders.Decode(record)
	rej, ok := errors.AsType[*responders.RejectError](err)
	if !ok || rej.Reason != responders.ReasonRetired || !strings.Contains(err.Error(), "2019-02-15") {
		t.Fatalf("Decode = %v, want a %q rejection naming the shutdown", err, responders.ReasonRetired)
	}
	if v, _ := responders.Classify(err); v != responders.Fail {
		t.Errorf("verdict %v, want permanent", v)
	}
}

func TestExampleConfigIsValidButRetired(t *testing.T) {
	cfg, err := deliverytest.Config(t, []byte(exampleConfig), nil)
	if err != nil {
		t.Fatalf("the example is not a valid HipchatConfig: %v", err)
	}
	if m, ok := responders.ForConfig(cfg.Schema); !ok || m.Retired == "" {
		t.Errorf("ForConfig(%s) = %+v, %v", cfg.Schema, m, ok)
	}
}

func TestREADMEShowsTheExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	record, err := os.ReadFile("testdata/command.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, example := range map[string]string{"example-config.json": exampleConfig, "testdata/command.json": string(record)} {
		if !strings.Contains(string(readme), strings.TrimSpace(example)) {
			t.Errorf("README.md does not contain %s verbatim", name)
		}
	}
}
