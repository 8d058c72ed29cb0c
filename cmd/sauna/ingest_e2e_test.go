package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/responders"
)

func ingestConfig(stream string, tokens map[string]string) string {
	var list []string
	for name, tok := range tokens {
		h := sha256.Sum256([]byte(tok))
		list = append(list, fmt.Sprintf(`{"name":%q,"sha256":%q}`, name, hex.EncodeToString(h[:])))
	}
	return fmt.Sprintf(`{"schema":"iglu:io.sauna.ingest/HttpIngestConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"ingest","parameters":{
   "listen":"127.0.0.1:0",
   "aws":{"accessKeyId":"","secretAccessKey":""},
   "kinesis":{"region":"us-east-1","streamName":%q},
   "tokens":[%s]}}}`, stream, strings.Join(list, ","))
}

// ingestURL waits for the endpoint to listen and returns its URL.
func (p *process) ingestURL(t testing.TB) string {
	t.Helper()
	rec := p.waitLogs(t, 1, 30*time.Second, msgIs("ingest listening"))
	return "http://" + fmt.Sprint(rec[len(rec)-1]["addr"]) + "/v1/commands"
}

type ingestAnswer struct {
	code int
	body struct {
		Accepted []struct {
			CommandID      string `json:"commandId"`
			ShardID        string `json:"shardId"`
			SequenceNumber string `json:"sequenceNumber"`
		} `json:"accepted"`
		Errors []struct {
			Index   int    `json:"index"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	raw string
}

func ingestPost(client *http.Client, url, token, ctype, body string) (ingestAnswer, error) {
	var a ingestAnswer
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return a, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ctype)
	resp, err := client.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return a, err
	}
	a.code, a.raw = resp.StatusCode, string(b)
	if err := json.Unmarshal(b, &a.body); err != nil {
		return a, fmt.Errorf("answer %d %q: %w", resp.StatusCode, b, err)
	}
	return a, nil
}

func mustPost(t *testing.T, url, token, ctype, body string) ingestAnswer {
	t.Helper()
	a, err := ingestPost(http.DefaultClient, url, token, ctype, body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// streamCommands reads every record of the stream and returns the sequence
// number of each command id found.
func streamCommands(t *testing.T, kin *kinesis.Client, stream string) map[string]string {
	t.Helper()
	shards, err := kin.ListShards(t.Context(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, sh := range shards.Shards {
		it, err := kin.GetShardIterator(t.Context(), &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatal(err)
		}
		for iter := it.ShardIterator; iter != nil; {
			res, err := kin.GetRecords(t.Context(), &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Records {
				cmd, err := responders.Decode(r.Data)
				if err != nil {
					t.Errorf("record %s is not a valid command: %v", aws.ToString(r.SequenceNumber), err)
					continue
				}
				out[cmd.ID] = aws.ToString(r.SequenceNumber)
			}
			if len(res.Records) == 0 && aws.ToInt64(res.MillisBehindLatest) == 0 {
				break
			}
			iter = res.NextShardIterator
		}
	}
	return out
}

// TestIngestEndToEnd drives POST /v1/commands of the binary with plain HTTP
// clients: 401, 400 with errors, 413, 202 with sequence numbers that are
// on the stream, the token never logged, and a token list reloaded in
// place.
func TestIngestEndToEnd(t *testing.T) {
	env := emulator.Require(t)
	stream := emulator.UniqueName(t, "ingest")
	env.CreateStream(t, stream, 2)
	dir := t.TempDir()
	const tok, tok2 = "tok-AAAA-1111-first", "tok-BBBB-2222-second"
	cfgFile := writeFile(t, dir, "ingest.json", ingestConfig(stream, map[string]string{"ci": tok}))
	p := startSauna(t, env, dir)
	url := p.ingestURL(t)

	if a := mustPost(t, url, "not-a-token", "application/json", slackInner("x")); a.code != 401 {
		t.Errorf("unknown token: %d %s", a.code, a.raw)
	}
	a := mustPost(t, url, tok, "application/x-ndjson",
		slackInner("fine")+"\n"+`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":5}}`+"\n")
	if a.code != 400 || len(a.body.Errors) == 0 || a.body.Errors[0].Index != 1 || a.body.Errors[0].Field != "/data/text" {
		t.Errorf("invalid second command: %d %s", a.code, a.raw)
	}
	if a := mustPost(t, url, tok, "application/json", `{"pad":"`+strings.Repeat("x", 2<<20)+`"}`); a.code != 413 {
		t.Errorf("2 MiB body: %d %s", a.code, a.raw)
	}

	full := commandRecord(uuidFor(1), time.Now(), "600000", slackInner("full"))
	a = mustPost(t, url, tok, "application/json", full)
	if a.code != 202 || len(a.body.Accepted) != 1 || a.body.Accepted[0].CommandID != uuidFor(1) {
		t.Fatalf("full command: %d %s", a.code, a.raw)
	}
	accepted := a.body.Accepted
	a = mustPost(t, url, tok, "application/x-ndjson", slackInner("b1")+"\n"+slackInner("b2")+"\n"+slackInner("b3"))
	if a.code != 202 || len(a.body.Accepted) != 3 {
		t.Fatalf("batch: %d %s", a.code, a.raw)
	}
	accepted = append(accepted, a.body.Accepted...)
	onStream := streamCommands(t, env.Kinesis(t), stream)
	for _, acc := range accepted {
		if seq, ok := onStream[acc.CommandID]; !ok || seq != acc.SequenceNumber || acc.ShardID == "" {
			t.Errorf("accepted %+v; on the stream: %q", acc, seq)
		}
	}
	if len(onStream) != len(accepted) {
		t.Errorf("%d commands on the stream, %d accepted: refused requests put something", len(onStream), len(accepted))
	}

	// A new token list applies without a new listener.
	writeFile(t, dir, "ingest.json", ingestConfig(stream, map[string]string{"deploy": tok2}))
	_ = cfgFile
	p.waitLogs(t, 1, 30*time.Second, msgIs("ingest config changed; applied to the next requests"))
	if a := mustPost(t, url, tok2, "application/json", slackInner("new token")); a.code != 202 {
		t.Errorf("new token: %d %s", a.code, a.raw)
	}
	if a := mustPost(t, url, tok, "application/json", slackInner("old token")); a.code != 401 {
		t.Errorf("removed token: %d %s", a.code, a.raw)
	}
	if n := len(p.logsMatching(msgIs("ingest listening"))); n != 1 {
		t.Errorf("listener started %d times; a token change must not restart it", n)
	}
	names := map[string]bool{}
	for _, l := range p.logsMatching(func(m map[string]any) bool { return m["token"] != nil }) {
		names[fmt.Sprint(l["token"])] = true
	}
	if !names["ci"] || !names["deploy"] {
		t.Errorf("token names logged: %v", names)
	}
	if out := p.output(); strings.Contains(out, tok) || strings.Contains(out, tok2) {
		t.Error("a bearer token is in the log")
	}

	_, metrics := httpDo(t, "GET", p.adminURL(t)+"/metrics")
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sauna_ingest_commands_total", nil, 5},
		{"sauna_ingest_requests_total", map[string]string{"code": "202"}, 3},
		{"sauna_ingest_requests_total", map[string]string{"code": "401"}, 2},
		{"sauna_ingest_requests_total", map[string]string{"code": "400"}, 1},
		{"sauna_ingest_requests_total", map[string]string{"code": "413"}, 1},
		{"sauna_ingest_request_duration_seconds_count", map[string]string{"code": "202"}, 3},
	} {
		if got, ok := promValue(metrics, m.name, m.labels); !ok || got != m.want {
			t.Errorf("%s%v = %v (found %v), want %v", m.name, m.labels, got, ok, m.want)
		}
	}
}

// TestIngestReadiness: /readyz names an ingest endpoint whose port is
// taken, and the endpoint starts listening once the port is free.
func TestIngestReadiness(t *testing.T) {
	env := emulator.Require(t)
	stream := emulator.UniqueName(t, "ingestready")
	env.CreateStream(t, stream, 1)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := taken.Addr().String()
	dir := t.TempDir()
	writeFile(t, dir, "ingest.json", strings.Replace(ingestConfig(stream, map[string]string{"ci": "tok-ready-0000"}), "127.0.0.1:0", addr, 1))
	p := startSauna(t, env, dir)
	admin := p.adminURL(t)
	p.waitLogs(t, 1, 30*time.Second, msgIs("ingest listener cannot start; retrying"))
	code, body := httpDo(t, "GET", admin+"/readyz")
	if code != 503 || !strings.Contains(body, "ingest ingest: not listening on "+addr) {
		t.Errorf("/readyz with the port taken: %d %s", code, body)
	}
	taken.Close()
	p.waitLogs(t, 1, 30*time.Second, msgIs("ingest listening"))
	// The directory holds no observer: an ingest endpoint alone is intake
	// enough to be ready.
	if code, body := httpDo(t, "GET", admin+"/readyz"); code != 200 {
		t.Errorf("/readyz of an ingest-only daemon whose endpoint listens: %d %s", code, body)
	}
	if a := mustPost(t, "http://"+addr+"/v1/commands", "tok-ready-0000", "application/json", slackInner("ready")); a.code != 202 {
		t.Errorf("after the port was freed: %d %s", a.code, a.raw)
	}
}

// TestIngestKill9 loads the endpoint with 16 clients sending single
// commands and kills sauna with SIGKILL in the middle: every command that
// was answered 202 is on the stream.
func TestIngestKill9(t *testing.T) {
	env := emulator.Require(t)
	stream := emulator.UniqueName(t, "ingestkill")
	env.CreateStream(t, stream, 4)
	dir := t.TempDir()
	const tok = "tok-load-test-0000"
	writeFile(t, dir, "ingest.json", ingestConfig(stream, map[string]string{"load": tok}))
	p := startSauna(t, env, dir)
	url := p.ingestURL(t)

	var (
		mu       sync.Mutex
		accepted []string
		other    = map[int]int{}
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	client := &http.Client{Timeout: 30 * time.Second}
	for c := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, err := ingestPost(client, url, tok, "application/json", slackInner(fmt.Sprintf("client %d command %d", c, i)))
				mu.Lock()
				switch {
				case err != nil:
					other[0]++
				case a.code == 202 && len(a.body.Accepted) == 1:
					accepted = append(accepted, a.body.Accepted[0].CommandID)
				default:
					other[a.code]++
				}
				mu.Unlock()
				if err != nil {
					return // the process is gone
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	// Load until a fair number of commands went through, then kill.
	waitFor(t, 60*time.Second, func() bool { return count() >= 200 }, func() string { return fmt.Sprintf("200 accepted commands, got %d", count()) })
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	close(stop)
	wg.Wait()

	onStream := streamCommands(t, env.Kinesis(t), stream)
	missing := 0
	for _, id := range accepted {
		if _, ok := onStream[id]; !ok {
			missing++
		}
	}
	t.Logf("%d commands answered 202, %d on the stream, other answers %v", len(accepted), len(onStream), other)
	if missing > 0 {
		t.Errorf("%d of %d commands answered 202 are not on the stream", missing, len(accepted))
	}
}
