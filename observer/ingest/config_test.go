package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sauna-io/sauna/schemas"
)

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// configData is the data part of an HttpIngestConfig with one token.
func configData(extra string) string {
	return `{"enabled": true, "id": "ingest", "parameters": {
   "listen": "127.0.0.1:8080",
   "aws": {"accessKeyId": "", "secretAccessKey": ""},
   "kinesis": {"region": "us-east-1", "streamName": "acme-sauna-commands"},
   "tokens": [{"name": "ci", "sha256": "` + tokenHash("s3cret-token") + `"}]` + extra + `}}`
}

// parseData normalises and parses the data of an HttpIngestConfig, as the
// config loader does.
func parseData(data string) (Config, error) {
	n, err := Configs.Normalise("ingest.json", ConfigSchema, []byte(data))
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(n)
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseData(configData(""))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("s3cret-token"))
	if c.ID != "ingest" || c.Listen != "127.0.0.1:8080" || c.StreamName != "acme-sauna-commands" || c.Region != "us-east-1" {
		t.Errorf("config %+v", c)
	}
	if len(c.Tokens) != 1 || c.Tokens[0].Name != "ci" || c.Tokens[0].SHA256 != want || c.Tokens[0].RatePerSecond != 0 {
		t.Errorf("tokens %+v", c.Tokens)
	}
	// The defaults come from the schema file.
	if c.MaxBodyBytes != 1<<20 || c.MaxCommands != 500 || c.DefaultTTL != time.Hour || c.PutTimeout != 10*time.Second ||
		c.Linger != 0 || c.MaxQueued != 10000 || c.MaxConcurrent != 4 || c.TLSCert != "" {
		t.Errorf("defaults %+v", c)
	}
	if !c.Loopback() {
		t.Error("127.0.0.1 is loopback")
	}
	if c2 := (Config{Listen: "0.0.0.0:8080"}); c2.Loopback() {
		t.Error("0.0.0.0 is not loopback")
	}
}

func fieldsOf(err error) map[string]string {
	out := map[string]string{}
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *schemas.FieldError
		if errors.As(err, &fe) && fe.File == "ingest.json" {
			out[fe.Path] = fe.Message
		}
	}
	walk(err)
	return out
}

func TestParseConfigRefuses(t *testing.T) {
	base := configData("")
	for _, tc := range []struct {
		name, data, field string
	}{
		{"no tokens", strings.Replace(base, `[{"name": "ci", "sha256": "`+tokenHash("s3cret-token")+`"}]`, `[]`, 1), "parameters.tokens"},
		{"token instead of hash", strings.Replace(base, tokenHash("s3cret-token"), "s3cret-token", 1), "parameters.tokens[0].sha256"},
		{"bad listen", strings.Replace(base, "127.0.0.1:8080", "localhost", 1), "parameters.listen"},
		{"bad stream", strings.Replace(base, "acme-sauna-commands", "no spaces allowed", 1), "parameters.kinesis.streamName"},
		{"half credentials", strings.Replace(base, `"accessKeyId": ""`, `"accessKeyId": "AKIA"`, 1), "parameters.aws"},
		{"batch limit", configData(`, "maxCommandsPerRequest": 501`), "parameters.maxCommandsPerRequest"},
		{"body limit", configData(`, "maxBodyBytes": 0`), "parameters.maxBodyBytes"},
		{"missing tls files", configData(`, "tls": {"certFile": "/nonexistent/cert.pem", "keyFile": "/nonexistent/key.pem"}`), "parameters.tls"},
		{"rate", strings.Replace(base, `"}]`, `", "rateLimitPerSecond": -1}]`, 1), "parameters.tokens[0].rateLimitPerSecond"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseData(tc.data)
			if err == nil {
				t.Fatal("accepted")
			}
			if _, ok := fieldsOf(err)["data."+tc.field]; !ok {
				t.Errorf("error %v does not name %s", err, tc.field)
			}
			if strings.Contains(err.Error(), "s3cret-token") {
				t.Errorf("error quotes the token: %v", err)
			}
		})
	}
}
