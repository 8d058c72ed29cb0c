package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// ---- 8. ingest ----

const (
	ingestClients  = 16
	ingestNDJSON   = 100 // commands per NDJSON request
	ingestToken    = "bench-ingest-token"
	ingestShards   = 4
	ingestPutBatch = 500
)

// ingestResult is one producer's measurement: commands acknowledged per
// second and the latency of each request (or call), in ms.
type ingestResult struct {
	commands int
	took     time.Duration
	lat      []float64
	errs     int
}

func (r ingestResult) cells() (rate, p50, p99 cell) {
	if r.commands == 0 || len(r.lat) == 0 {
		t := text(fmt.Sprintf("nothing acknowledged (%d errors)", r.errs))
		return t, t, t
	}
	return num(float64(r.commands)/r.took.Seconds(), "%.0f"), num(pct(r.lat, 50), "%.1f"), num(pct(r.lat, 99), "%.1f")
}

func scenarioIngest(ctx context.Context, e *env) (*section, error) {
	dur := 10 * time.Second
	if e.quick {
		dur = 3 * time.Second
	}
	s := &section{name: "ingest", title: "8. HTTP ingest: commands/s put on the stream",
		method: fmt.Sprintf("A %d-shard stream per column. sauna runs only an HttpIngestConfig (schema defaults: linger 0 ms, "+
			"4 PutRecords in flight); %d clients POST to /v1/commands back to back for %s, each request answered 202 only "+
			"once Kinesis acknowledged its records: single bare probe commands (application/json), then NDJSON requests of %d. "+
			"Against: %d goroutines each calling the SDK's PutRecord in a loop (what `aws kinesis put-record` per command "+
			"does, without its process start), and one loop of PutRecords with %d records back to back (the emulator's put "+
			"ceiling). Latency is per request or call.", ingestShards, ingestClients, secs(dur), ingestNDJSON, ingestClients, ingestPutBatch)}
	cols := []string{"sauna ingest, single", fmt.Sprintf("sauna ingest, NDJSON %d", ingestNDJSON), fmt.Sprintf("SDK PutRecord x%d", ingestClients), "PutRecords 500 back to back"}
	t := &table{cols: cols}
	s.tables = []*table{t}
	runs := []func() (ingestResult, error){
		func() (ingestResult, error) { return ingestSaunaRun(ctx, e, dur, 1) },
		func() (ingestResult, error) { return ingestSaunaRun(ctx, e, dur, ingestNDJSON) },
		func() (ingestResult, error) { return ingestPutRecordLoop(ctx, e, dur) },
		func() (ingestResult, error) { return ingestPutRecordsCeiling(ctx, e, dur) },
	}
	var rates, p50s, p99s []cell
	for i, run := range runs {
		log.Printf("ingest: %s", cols[i])
		var res ingestResult
		err := e.fresh(ctx)
		if err == nil {
			res, err = run()
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.notes = append(s.notes, fmt.Sprintf("%s: error: %v", cols[i], err))
			c := text("error (see notes)")
			rates, p50s, p99s = append(rates, c), append(p50s, c), append(p99s, c)
			continue
		}
		if res.errs > 0 {
			s.notes = append(s.notes, fmt.Sprintf("%s: %d requests or calls failed", cols[i], res.errs))
		}
		r, a, b := res.cells()
		log.Printf("ingest: %s: %s commands/s, p50 %s ms, p99 %s ms", cols[i], r.text, a.text, b.text)
		rates, p50s, p99s = append(rates, r), append(p50s, a), append(p99s, b)
	}
	t.add(&row{metric: "commands acknowledged per second", cells: rates})
	t.add(&row{metric: "request latency p50 (ms)", cells: p50s})
	t.add(&row{metric: "request latency p99 (ms)", cells: p99s})
	buildNotes(e, s)
	return s, nil
}

func probeCommand(key string, n int) string {
	return fmt.Sprintf(`{"schema":"iglu:io.sauna.bench.commands/probe/jsonschema/1-0-0","data":{"key":%q,"n":%d,"putNanos":%d}}`,
		key, n, time.Now().UnixNano())
}

// ingestSaunaRun starts sauna with an ingest config on a fresh stream and
// loads it with the clients, perRequest commands per request.
func ingestSaunaRun(ctx context.Context, e *env, dur time.Duration, perRequest int) (ingestResult, error) {
	bin, ok := e.bins[kindSauna]
	if !ok {
		return ingestResult{}, fmt.Errorf("sauna is not built: %v", e.buildErr[kindSauna])
	}
	st, err := e.createStream(ctx, ingestShards)
	if err != nil {
		return ingestResult{}, err
	}
	id := e.name("ingest")
	dir, err := os.MkdirTemp(e.tmp, id+"-config-")
	if err != nil {
		return ingestResult{}, err
	}
	sum := sha256.Sum256([]byte(ingestToken))
	cfg := map[string]any{
		"schema": "iglu:io.sauna.ingest/HttpIngestConfig/avro/1-0-0",
		"data": map[string]any{"enabled": true, "id": "bench-ingest", "parameters": map[string]any{
			"listen":  "127.0.0.1:0",
			"kinesis": map[string]any{"region": "us-east-1", "streamName": st.name},
			"tokens":  []any{map[string]any{"name": "bench", "sha256": hex.EncodeToString(sum[:])}},
		}},
	}
	if err := writeJSON(filepath.Join(dir, "ingest.json"), cfg); err != nil {
		return ingestResult{}, err
	}
	logPath := filepath.Join(e.tmp, id+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return ingestResult{}, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config-dir", dir, "--log-format", "json", "--admin-addr", "127.0.0.1:0")
	cmd.Env = e.childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return ingestResult{}, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(25 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	addr, err := waitListening(ctx, logPath, exited, 60*time.Second)
	if err != nil {
		return ingestResult{}, err
	}
	url := "http://" + addr + "/v1/commands"
	ctype := "application/json"
	if perRequest > 1 {
		ctype = "application/x-ndjson"
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: ingestClients}}
	return loadFor(ctx, dur, func(c, i int) (int, error) {
		var body strings.Builder
		for j := range perRequest {
			body.WriteString(probeCommand(fmt.Sprintf("c%d", c), i*perRequest+j))
			body.WriteByte('\n')
		}
		req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body.String()))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+ingestToken)
		req.Header.Set("Content-Type", ctype)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			return 0, fmt.Errorf("%d: %s", resp.StatusCode, firstLines(string(b), 2))
		}
		return perRequest, nil
	})
}

// waitListening reads sauna's JSON log until the ingest listener's address
// shows up.
func waitListening(ctx context.Context, logPath string, exited <-chan struct{}, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(logPath); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				var m struct {
					Msg  string `json:"msg"`
					Addr string `json:"addr"`
				}
				if json.Unmarshal(sc.Bytes(), &m) == nil && m.Msg == "ingest listening" && m.Addr != "" {
					return m.Addr, nil
				}
			}
		}
		select {
		case <-exited:
			return "", fmt.Errorf("sauna exited before listening; log: %s", logPath)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("sauna's ingest endpoint not listening within %s; log: %s", limit, logPath)
}

// ingestPutRecordLoop is the SDK stand-in: one PutRecord per command.
func ingestPutRecordLoop(ctx context.Context, e *env, dur time.Duration) (ingestResult, error) {
	st, err := e.createStream(ctx, ingestShards)
	if err != nil {
		return ingestResult{}, err
	}
	return loadFor(ctx, dur, func(c, i int) (int, error) {
		key := fmt.Sprintf("c%d-%d", c, i)
		_, err := e.kin.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(st.name), PartitionKey: aws.String(key), Data: record(key, int64(i), time.Now().UnixNano())})
		return 1, err
	}, 1)
}

// ingestPutRecordsCeiling is one loop of full PutRecords calls.
func ingestPutRecordsCeiling(ctx context.Context, e *env, dur time.Duration) (ingestResult, error) {
	st, err := e.createStream(ctx, ingestShards)
	if err != nil {
		return ingestResult{}, err
	}
	return loadFor(ctx, dur, func(_, i int) (int, error) {
		entries := make([]types.PutRecordsRequestEntry, ingestPutBatch)
		for j := range entries {
			key := fmt.Sprintf("k%d-%d", i, j)
			entries[j] = types.PutRecordsRequestEntry{PartitionKey: aws.String(key), Data: record(key, int64(j), time.Now().UnixNano())}
		}
		out, err := e.kin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(st.name), Records: entries})
		if err != nil {
			return 0, err
		}
		return ingestPutBatch - int(aws.ToInt32(out.FailedRecordCount)), nil
	}, 1)
}

// loadFor runs op back to back in parallel loops (ingestClients unless
// given) for dur and sums what they acknowledged.
func loadFor(ctx context.Context, dur time.Duration, op func(client, i int) (int, error), loops ...int) (ingestResult, error) {
	n := ingestClients
	if len(loops) > 0 {
		n = loops[0]
	}
	var (
		mu      sync.Mutex
		res     ingestResult
		lastErr error
		wg      sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(dur)
	for c := range n {
		wg.Go(func() {
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				k, err := op(c, i)
				ms := float64(time.Since(t0).Microseconds()) / 1000
				mu.Lock()
				if err != nil {
					res.errs++
					lastErr = err
				} else {
					res.commands += k
					res.lat = append(res.lat, ms)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.took = time.Since(start)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if res.commands == 0 && lastErr != nil {
		return res, errors.Join(errors.New("nothing acknowledged"), lastErr)
	}
	return res, nil
}
