package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// ---- fresh emulator state for every measurement ----
//
// kinesalite and dynalite keep everything in memory and slow down with
// what they hold: a run measured after a scenario that left hundreds of
// thousands of outcome items behind is slower than the same run alone. So
// every consumer's run, and every scenario, starts on empty emulators:
// restarted through scripts/emulators/emulators.sh when the harness was
// given it (-emulators, as scripts/bench.sh does), otherwise by deleting
// every stream and table this harness created and waiting until they are
// gone, so that emulators a developer started are never stopped.

// freshMode says in the report how the emulators were made fresh.
func (e *env) freshMode() string {
	if e.emulators != "" {
		return "restarted"
	}
	return "emptied"
}

// touch records that the emulators may hold state: every path to them
// (createStream, dynamo, start) calls it.
func (e *env) touch() { e.dirty.Store(true) }

// fresh makes the emulators empty before a measurement, unless nothing
// touched them since they last were. keep names streams that must survive
// (drain-steady's preloaded backlog); with any, the emulators are emptied
// around them instead of restarted. It must not run while a consumer or
// producer of the harness does: the endpoints may change.
func (e *env) fresh(ctx context.Context, keep ...*stream) error {
	if !e.dirty.Load() {
		return nil
	}
	if e.emulators != "" && len(keep) == 0 {
		if err := e.restart(ctx); err != nil {
			return fmt.Errorf("restart the emulators: %w", err)
		}
		e.restarts++
		e.dirty.Store(false)
		return nil
	}
	if err := e.empty(ctx, keep); err != nil {
		return fmt.Errorf("empty the emulators: %w", err)
	}
	e.emptied++
	// A kept stream is still there for the next measurement to find.
	e.dirty.Store(len(keep) > 0)
	return nil
}

// restart stops the emulators the script started under $EMULATORS_DIR,
// starts them again on free ports and takes their new endpoints.
func (e *env) restart(ctx context.Context) error {
	start := time.Now()
	for _, verb := range []string{"stop", "start"} {
		if _, err := e.emulatorsScript(ctx, verb); err != nil {
			return err
		}
	}
	out, err := e.emulatorsScript(ctx, "env")
	if err != nil {
		return err
	}
	kinURL, ddbURL, err := parseEmulatorEnv(out)
	if err != nil {
		return err
	}
	e.setEndpoints(kinURL, ddbURL)
	pid, _ := os.ReadFile(filepath.Join(os.Getenv("EMULATORS_DIR"), "dynamodb.pid"))
	log.Printf("fresh emulators: restarted in %.1f s; kinesis %s, dynamodb %s (dynalite pid %s)",
		time.Since(start).Seconds(), kinURL, ddbURL, strings.TrimSpace(string(pid)))
	return nil
}

// emulatorsScript runs `emulators.sh verb` with the harness's environment
// (EMULATORS_DIR, WITH_MOTO); its progress goes to the harness's stderr.
// A cancelled ctx sends SIGTERM, which the script's start turns into
// stopping what it had started.
func (e *env) emulatorsScript(ctx context.Context, verb string) (string, error) {
	cmd := exec.CommandContext(ctx, e.emulators, verb)
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", e.emulators, verb, err)
	}
	return string(out), nil
}

func (e *env) setEndpoints(kinURL, ddbURL string) {
	e.kinURL, e.ddbURL = kinURL, ddbURL
	e.kin = kinesis.NewFromConfig(awsConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinURL) })
}

// parseEmulatorEnv reads the endpoints from what `emulators.sh env`
// prints, refusing anything but loopback as the flags' endpoints are.
func parseEmulatorEnv(out string) (kinURL, ddbURL string, err error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "), "=")
		if ok {
			vars[k] = strings.Trim(v, `'"`)
		}
	}
	for _, want := range []struct {
		name string
		dst  *string
	}{{"AWS_ENDPOINT_URL_KINESIS", &kinURL}, {"AWS_ENDPOINT_URL_DYNAMODB", &ddbURL}} {
		v, ok := vars[want.name]
		if !ok {
			return "", "", fmt.Errorf("emulators.sh env printed no %s", want.name)
		}
		if err := loopbackURL(want.name, v); err != nil {
			return "", "", err
		}
		*want.dst = v
	}
	return kinURL, ddbURL, nil
}

// ownedName tells the streams and tables of this harness run (every name
// comes from env.name, or is one of them with a suffix, as sauna's
// outcome table `<id>-commands`) from anything else in the emulators.
func ownedName(name, runID string) bool {
	return strings.Contains(name, "-"+runID+"-")
}

// empty deletes every stream but keep and every table this harness run
// created, and waits until they are gone.
func (e *env) empty(ctx context.Context, keep []*stream) error {
	start := time.Now()
	kept := map[string]bool{}
	for _, st := range keep {
		kept[st.name] = true
	}
	var streams, tables []string
	sp := kinesis.NewListStreamsPaginator(e.kin, &kinesis.ListStreamsInput{})
	for sp.HasMorePages() {
		page, err := sp.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list streams: %w", err)
		}
		for _, n := range page.StreamNames {
			if ownedName(n, e.runID) && !kept[n] {
				streams = append(streams, n)
			}
		}
	}
	db := e.dynamo()
	tp := dynamodb.NewListTablesPaginator(db, &dynamodb.ListTablesInput{})
	for tp.HasMorePages() {
		page, err := tp.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list tables: %w", err)
		}
		for _, n := range page.TableNames {
			if ownedName(n, e.runID) {
				tables = append(tables, n)
			}
		}
	}
	var errs []error
	for _, n := range streams {
		_, err := e.kin.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(n), EnforceConsumerDeletion: aws.Bool(true)})
		if err == nil {
			w := kinesis.NewStreamNotExistsWaiter(e.kin, func(o *kinesis.StreamNotExistsWaiterOptions) {
				o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second
			})
			err = w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(n)}, 5*time.Minute)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete stream %s: %w", n, err))
		}
	}
	for _, n := range tables {
		// dynalite drops the items before it answers, which takes a while
		// for hundreds of thousands; the waiter covers emulators that do not.
		_, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(n)})
		if err == nil {
			w := dynamodb.NewTableNotExistsWaiter(db, func(o *dynamodb.TableNotExistsWaiterOptions) {
				o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
			})
			err = w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(n)}, 5*time.Minute)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete table %s: %w", n, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Printf("fresh emulators: deleted %d streams and %d tables in %.1f s (kept %d streams)",
		len(streams), len(tables), time.Since(start).Seconds(), len(keep))
	return nil
}
