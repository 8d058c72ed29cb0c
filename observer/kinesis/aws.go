package kinesis

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// LoadAWS builds the one aws.Config every client of an observer shares.
// Static keys from the config win (Sauna's only mode); without them the SDK's
// default chain applies. Endpoints follow the SDK's standard variables
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_DYNAMODB,
// AWS_ENDPOINT_URL_CLOUDWATCH), which is how emulators are reached.
func LoadAWS(ctx context.Context, region, accessKeyID, secretAccessKey string) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		awsconfig.WithHTTPClient(newHTTPClient()),
	}
	if accessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, "")))
	}
	return awsconfig.LoadDefaultConfig(ctx, opts...)
}

// newHTTPClient bounds every phase of a request except reading a streamed
// body. The KCL passes no context to its calls, so without these timeouts a
// silent endpoint would hang a shard consumer, and shutdown with it, for ever.
// There is deliberately no overall client timeout: it would cut long-lived
// enhanced fan-out streams.
func newHTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.TLSHandshakeTimeout = 5 * time.Second
		t.ResponseHeaderTimeout = 10 * time.Second
		t.IdleConnTimeout = 90 * time.Second
		// A request goes out in one write: with the default 4 KiB buffer,
		// an outcome write of 25 items or a Peek of 100 ids (5 to 8 kB)
		// took two, and a write on a loopback or a virtual machine's network
		// costs about as much CPU as building the request.
		t.WriteBufferSize = requestBuffer
	})
}

// requestBuffer holds the largest requests an observer makes often, with
// their headers (an outcome write of 25 items is about 17 kB); headerRoom
// is what is left of it for the headers.
const (
	requestBuffer = 32 << 10
	headerRoom    = 4 << 10
)

// NewKinesisClient builds the Kinesis client handed to the KCL worker.
func NewKinesisClient(cfg aws.Config) *kds.Client { return kds.NewFromConfig(cfg) }

// NewDynamoDBClient builds the client of the lease table.
func NewDynamoDBClient(cfg aws.Config) *dynamodb.Client {
	// After the client resolved its HTTP client, which it adjusts only when
	// it is the SDK's own kind.
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.HTTPClient = oneWrite{o.HTTPClient} })
}

// oneWrite hands net/http a request body it knows to be in memory, so that
// the headers and the body go out in one write (with a buffer that holds
// them, requestBuffer). The SDK's body is a wrapper net/http cannot see
// into: it writes the headers on their own first, in case the body blocks,
// and an outcome write or a Peek cost two writes. The body is copied, which
// costs far less than a write to a socket.
type oneWrite struct{ next dynamodb.HTTPClient }

func (c oneWrite) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength <= 0 || req.ContentLength > requestBuffer-headerRoom {
		return c.next.Do(req)
	}
	body := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, body)
	if cerr := req.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c.next.Do(r)
}
