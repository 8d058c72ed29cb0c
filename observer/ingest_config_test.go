package observer

import (
	"strings"
	"testing"
)

const ingestConfig = `{"schema": "iglu:io.sauna.ingest/HttpIngestConfig/avro/1-0-0",
 "data": {"enabled": true, "id": "ingest", "parameters": {
   "listen": "127.0.0.1:8080",
   "aws": {"accessKeyId": "", "secretAccessKey": ""},
   "kinesis": {"region": "us-east-1", "streamName": "acme-sauna-commands"},
   "tokens": [{"name": "ci", "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}}}`

func TestParseIngestConfig(t *testing.T) {
	e, probs := ParseFile("ingest.json", []byte(ingestConfig), quiet)
	if e == nil || len(probs) > 0 {
		t.Fatalf("refused: %v", probs)
	}
	if e.Kind != KindIngest || e.Ingest.StreamName != "acme-sauna-commands" || len(e.Ingest.Tokens) != 1 {
		t.Errorf("entry %+v", e)
	}
	noTokens := strings.Replace(ingestConfig, `[{"name": "ci", "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]`, `[]`, 1)
	e, probs = ParseFile("ingest.json", []byte(noTokens), quiet)
	if e != nil || len(probs) != 1 || probs[0].File != "ingest.json" || probs[0].Field != "data.parameters.tokens" || probs[0].Warning {
		t.Errorf("no tokens: entry %v, problems %+v", e, probs)
	}
}
