package metrics

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
)

var namespaceRE = regexp.MustCompile(`^[0-9A-Za-z.\-_/#: ]{1,255}$`)

// ValidNamespace applies CloudWatch's namespace rules, so a bad one is a
// config error at load time rather than a stream of refused requests.
func ValidNamespace(ns string) error {
	switch {
	case !namespaceRE.MatchString(ns):
		return fmt.Errorf("%q is not a CloudWatch namespace: use 1-255 characters of A-Z a-z 0-9 . - _ / # : and space", ns)
	case strings.HasPrefix(ns, ":"):
		return fmt.Errorf("%q is not a CloudWatch namespace: it must not start with a colon", ns)
	case strings.HasPrefix(ns, "AWS/"):
		return fmt.Errorf("%q is not a CloudWatch namespace: AWS/ is reserved for AWS services", ns)
	}
	return nil
}

// NewCloudWatchClient builds the client of the sink from the observer's
// shared aws.Config.
//
// It speaks AWS JSON 1.0: the SDK's default Smithy RPCv2 CBOR is refused by
// moto 5.2.1, while JSON 1.0 works there and on AWS. Request compression is
// off because moto answers a gzip-compressed PutMetricData with a 500. The
// SDK does not retry: what a flush could not send stays buffered for the
// next one, so in-call retries would only hold the flush up.
//
// The endpoint follows AWS_ENDPOINT_URL_CLOUDWATCH (then AWS_ENDPOINT_URL),
// as the SDK does for configs from config.LoadDefaultConfig; here it also
// holds for an aws.Config built by hand, which has no config sources.
func NewCloudWatchClient(cfg aws.Config, optFns ...func(*cloudwatch.Options)) *cloudwatch.Client {
	fns := append([]func(*cloudwatch.Options){func(o *cloudwatch.Options) {
		o.Protocol = awsjson.New10(cwschemas.GraniteServiceVersion20100801)
		o.DisableRequestCompression = true
		o.RetryMaxAttempts = 1
		if o.BaseEndpoint == nil {
			if ep := endpointFromEnv(); ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}
	}}, optFns...)
	return cloudwatch.NewFromConfig(cfg, fns...)
}

func endpointFromEnv() string {
	if strings.EqualFold(os.Getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return ""
	}
	if ep := os.Getenv("AWS_ENDPOINT_URL_CLOUDWATCH"); ep != "" {
		return ep
	}
	return os.Getenv("AWS_ENDPOINT_URL")
}
