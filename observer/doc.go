// Package observer turns a config directory into running observers and
// responders: it reads and validates each config file (Sauna's
// self-describing Avro-JSON, or plain JSON), builds the enabled responders
// into a dispatcher, and runs one Kinesis observer per enabled
// AmazonKinesisConfig, keeping each file's entity independent of the others.
package observer
