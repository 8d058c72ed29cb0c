package kinesis

import (
	"context"
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
	})
}

// NewKinesisClient builds the Kinesis client handed to the KCL worker.
func NewKinesisClient(cfg aws.Config) *kds.Client { return kds.NewFromConfig(cfg) }

// NewDynamoDBClient builds the client of the lease table.
func NewDynamoDBClient(cfg aws.Config) *dynamodb.Client { return dynamodb.NewFromConfig(cfg) }
