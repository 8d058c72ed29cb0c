package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
)

// hostileRequest is one request the hostile-input receiver got.
type hostileRequest struct {
	header http.Header
	body   []byte
	// verified: the signature checks out per responders/webhook/README.md;
	// replayable: it would also check out under another command id.
	verified, replayable bool
}

// TestHostileInput runs the binary with a webhook config holding secrets in
// its URL, its headers and its signing secret, against a receiver that
// echoes the bare credentials in its error text, and feeds it hostile
// commands. No secret, whole or in part, reaches the log, a dead letter or
// the outcome table; commands that try to set proxy-steering headers or
// shadow a config header are refused naming the header; a 300,000-digit
// timeToLive is refused naming the field without being quoted; requests
// verify by the README's recipe, which covers the command id; and a 429
// asking for 27 hours is dead-lettered when the 3 s retry budget ends,
// without another request.
func TestHostileInput(t *testing.T) {
	env := emulator.Require(t)
	stream := emulator.UniqueName(t, "hostile")
	dlq := emulator.UniqueName(t, "hostile-dlq")
	obsID := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 1)
	env.CreateStream(t, dlq, 1)
	kin := env.Kinesis(t)

	const (
		token         = "tok-4f9c2a7e81d3b605"
		apiKey        = "key-93b1e0c47a5d2f68"
		pathSecret    = "T0PATHSECRET8c1d"
		querySecret   = "Q0QUERYSECRET77aa"
		signingSecret = "sig-secret-5e0b7d9a13c4f286"
	)
	secrets := []string{token, apiKey, pathSecret, querySecret, signingSecret}
	echo := fmt.Sprintf("invalid token %s; key %s not valid for /hook/%s?k=%s", token, apiKey, pathSecret, querySecret)

	echoCmd := uuidFor(31_000_001)
	shadowCmd := uuidFor(31_000_002)
	overrideCmd := uuidFor(31_000_003)
	hugeCmd := uuidFor(31_000_004)
	signedCmd := uuidFor(31_000_005)
	limitedCmd := uuidFor(31_000_006)

	var mu sync.Mutex
	got := map[string][]hostileRequest{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("X-Sauna-Command-Id")
		replayed := r.Header.Clone()
		replayed.Set("X-Sauna-Command-Id", uuidFor(31_999_999))
		req := hostileRequest{header: r.Header.Clone(), body: body,
			verified:   verifySauna([]byte(signingSecret), r.Header, body, time.Now()) == nil,
			replayable: verifySauna([]byte(signingSecret), replayed, body, time.Now()) == nil}
		mu.Lock()
		got[id] = append(got[id], req)
		n := len(got[id])
		mu.Unlock()
		switch {
		case id == echoCmd && n <= 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, echo)
		case id == echoCmd:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, echo)
		case id == limitedCmd:
			w.Header().Set("Retry-After", "100000")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "slow down")
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	requests := func(id string) []hostileRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]hostileRequest(nil), got[id]...)
	}

	dir := t.TempDir()
	writeFile(t, dir, "observer.json", dlvObserverConfig(obsID, stream, "TRIM_HORIZON", 3000, dlq))
	writeFile(t, dir, "webhook.json", fmt.Sprintf(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.webhook","parameters":{"url":%q,
   "headers":{"Authorization":%q,"X-Api-Key":%q},"signingSecret":%q,
   "timeoutMillis":5000,"rateLimitPerSecond":null,"rateLimitBurst":5}}}`,
		srv.URL+"/hook/"+pathSecret+"?k="+querySecret, "Bearer "+token, apiKey, signingSecret))
	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	webhook := func(body, headers string) string {
		return fmt.Sprintf(`{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":%s,"headers":%s}}`, body, headers)
	}
	put := func(id, ttl, inner string) {
		t.Helper()
		if err := dlvPut(t.Context(), kin, stream, dlvCommand{ID: id, Key: id, Data: []byte(commandRecord(id, time.Now(), ttl, inner))}); err != nil {
			t.Fatal(err)
		}
	}
	hugeTTL := strings.Repeat("9", 300_000)
	put(echoCmd, "null", webhook(`{"n":1}`, `{}`))
	put(shadowCmd, "null", webhook(`{"n":2}`, `{"X_Api_Key":"mine"}`))
	put(overrideCmd, "null", webhook(`{"n":3}`, `{"X-HTTP-Method-Override":"DELETE"}`))
	put(hugeCmd, hugeTTL, webhook(`{"n":4}`, `{}`))
	put(signedCmd, "null", webhook(`{"n": 5, "s": "<&>"}`, `{"X-Event":"signed"}`))

	letters := map[string]deadletter.Letter{}
	for _, id := range []string{echoCmd, shadowCmd, overrideCmd, hugeCmd} {
		letters[id] = dlvWaitLetter(t, kin, dlq, id)
	}
	waitFor(t, giveUp, func() bool { return len(requests(signedCmd)) > 0 }, func() string { return "the signed command" })

	// A vendor asking for 27 hours holds every command bound to it (up to
	// 5 minutes): this one comes last.
	put(limitedCmd, "null", webhook(`{"n":6}`, `{}`))
	letters[limitedCmd] = dlvWaitLetter(t, kin, dlq, limitedCmd)

	check := func(id, reason, errSubstr string) {
		t.Helper()
		l := letters[id]
		if l.Reason != reason || !strings.Contains(l.Error, errSubstr) {
			t.Errorf("dead letter of %s: reason %q, error %.500q; want %q with %q", id, l.Reason, l.Error, reason, errSubstr)
		}
	}
	check(echoCmd, verdict.FailedPermanently, "HTTP 401 Unauthorized: invalid token [REDACTED]; key [REDACTED]")
	check(shadowCmd, verdict.FailedPermanently, `command header "X_Api_Key": the config sets "X-Api-Key"`)
	check(overrideCmd, "rejected:invalid_data", `"X-HTTP-Method-Override" is refused`)
	check(hugeCmd, "rejected:invalid_data", "record: /data/envelope/data/execution/timeToLive: a number of 300000 characters; at most 64 are accepted")
	check(limitedCmd, verdict.RetryBudgetExhausted, "HTTP 429 Too Many Requests")
	if l := letters[hugeCmd]; len(l.Error) > 1024 {
		t.Errorf("the huge number's dead letter quotes %d bytes", len(l.Error))
	}
	if n := len(requests(echoCmd)); n != 3 {
		t.Errorf("the echoing receiver got %d requests, want 2 answered 503 and one 401", n)
	}
	for _, id := range []string{shadowCmd, overrideCmd, hugeCmd} {
		if n := len(requests(id)); n != 0 {
			t.Errorf("command %s reached the receiver %d times", id, n)
		}
	}
	// Retry-After: 100000 against a 3 s budget: dead-lettered when the
	// budget ends (the bound below only gives up on a slow machine), without
	// a request the receiver asked not to get.
	if l := letters[limitedCmd]; l.LastAttempt.Sub(l.FirstAttempt) > time.Minute || len(requests(limitedCmd)) != 1 {
		t.Errorf("the rate-limited command: dead-lettered after %s, %d requests; want at the 3 s budget, one request",
			l.LastAttempt.Sub(l.FirstAttempt), len(requests(limitedCmd)))
	}

	signed := requests(signedCmd)
	if len(signed) != 1 || !signed[0].verified || signed[0].replayable || string(signed[0].body) != `{"n": 5, "s": "<&>"}` {
		t.Errorf("signed requests %+v: want one, verified by the README's recipe, not under another command id", signed)
	}
	for _, id := range []string{echoCmd, signedCmd, limitedCmd} {
		for _, r := range requests(id) {
			if !r.verified || r.header.Get("Authorization") != "Bearer "+token || r.header.Get("X-Api-Key") != apiKey {
				t.Errorf("request for %s: verified %v, config headers %q %q", id, r.verified, r.header.Get("Authorization"), r.header.Get("X-Api-Key"))
			}
		}
	}

	stopCleanly(t, p)
	logs := p.output()
	for _, s := range secrets {
		if n := strings.Count(logs, s); n > 0 {
			t.Errorf("the log holds secret %q %d times", s, n)
		}
		for id, l := range letters {
			if strings.Contains(l.Error, s) || strings.Contains(l.Reason, s) {
				t.Errorf("the dead letter of %s holds secret %q: %s", id, s, l.Error)
			}
		}
	}
	if !strings.Contains(logs, "invalid token [REDACTED]") {
		t.Error("the receiver's error text is not in the log, redacted")
	}
	if strings.Contains(logs, hugeTTL[:1000]) {
		t.Error("the log quotes the huge number")
	}
	for _, line := range strings.Split(logs, "\n") {
		if len(line) > 8<<10 {
			t.Errorf("a log line of %d bytes: %.300s", len(line), line)
		}
	}
	hostileCheckOutcomes(t, env, obsID+"-commands", secrets)
}

// hostileCheckOutcomes scans every string the outcome table holds for the
// secrets, and checks that the echoing receiver's reason is there, redacted.
func hostileCheckOutcomes(t *testing.T, env emulator.Env, table string, secrets []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := dgDB(t, env).Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("outcome table %s: %v", table, err)
	}
	redacted := false
	for _, item := range out.Items {
		for name, v := range item {
			s, ok := v.(*ddbtypes.AttributeValueMemberS)
			if !ok {
				continue
			}
			for _, secret := range secrets {
				if strings.Contains(s.Value, secret) {
					t.Errorf("outcome table attribute %s holds secret %q: %s", name, secret, s.Value)
				}
			}
			redacted = redacted || strings.Contains(s.Value, "invalid token [REDACTED]")
		}
	}
	if !redacted {
		t.Errorf("no outcome in %s (%d items) records the receiver's reason, redacted", table, len(out.Items))
	}
}
