// Command demo supports scripts/demo.sh: it plays a Slack incoming webhook
// on loopback and creates the demo stream on the local Kinesis emulator.
//
//	demo sink URLFILE          serve until SIGTERM; write the base URL to URLFILE
//	demo create-stream NAME N  create a stream of N shards and wait until ACTIVE
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: demo sink URLFILE | demo create-stream NAME SHARDS")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "sink":
		err = sink(os.Args[2])
	case "create-stream":
		var n int32
		if n, err = shardCount(os.Args[3:]); err == nil {
			err = createStream(os.Args[2], n)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func sink(urlFile string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var n atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var msg struct {
			Channel     string `json:"channel"`
			Username    string `json:"username"`
			Text        string `json:"text"`
			Attachments []struct {
				Title string `json:"title"`
			} `json:"attachments"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		i := n.Add(1)
		fmt.Printf("slack #%d  %s  %s  %q", i, msg.Channel, msg.Username, msg.Text)
		for _, a := range msg.Attachments {
			fmt.Printf("  [attachment %q]", a.Title)
		}
		fmt.Println()
		io.WriteString(w, "ok")
	})}
	if err := os.WriteFile(urlFile, []byte("http://"+ln.Addr().String()), 0o600); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// shardCount reads create-stream's SHARDS argument.
func shardCount(args []string) (int32, error) {
	if len(args) != 1 {
		return 0, errors.New("usage: demo create-stream NAME SHARDS")
	}
	n, err := strconv.ParseInt(args[0], 10, 32)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("SHARDS: want a number of shards of at least 1, got %q", args[0])
	}
	return int32(n), nil
}

func createStream(name string, shards int32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	client := kinesis.NewFromConfig(cfg)
	if _, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		return err
	}
	return kinesis.NewStreamExistsWaiter(client).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 30*time.Second)
}
